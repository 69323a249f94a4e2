# Source this (`source scripts/tools-env.sh`) to put the project's own tools first on PATH:
# the Python venv (moto_server, cargo-lambda, sam, cfn-lint, python3 with ziglang and
# cfn_lint_serverless) and the npm packages (prism) that scripts/install-tools.sh installs
# under .tools/ at the repository root. Nothing here installs anything.
_tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools"
if [[ ! -f $_tools_dir/venv/.stamp || ! -f $_tools_dir/node/.stamp ]]; then
  echo "warning: the project's tools are not installed in $_tools_dir; run scripts/install-tools.sh (make tools)" >&2
fi
export VIRTUAL_ENV="$_tools_dir/venv"
case ":$PATH:" in
  ":$_tools_dir/venv/bin:$_tools_dir/node/node_modules/.bin:"*) ;;
  *) export PATH="$_tools_dir/venv/bin:$_tools_dir/node/node_modules/.bin:$PATH" ;;
esac
unset _tools_dir
hash -r
