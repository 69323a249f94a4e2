#!/usr/bin/env bash
# Output shown in the docs is generated, so it cannot drift:
# - README.md's Quick start block is the real output of `make demo`, with what changes from
#   run to run masked (addresses and ports, times, durations);
# - docs/benchmarks.md's results table is `bench table`, made from bench/results.json.
#   scripts/check-docs.sh           compare; exit 1 and show the difference if one drifted
#   scripts/check-docs.sh --update  rewrite both blocks from the current output
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run --quiet -p devstack -- demo >"$work/demo"
cargo run --quiet -p bench -- table >"$work/bench-table"
python3 - "$work" "${1:-}" <<'PY'
import difflib, re, sys

work, mode = sys.argv[1], sys.argv[2]

def mask(text):
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", text)
    text = re.sub(r"\b\d{4}-\d\d-\d\d\b", "<day>", text)
    return re.sub(r'"durationMs": \d+', '"durationMs": <ms>', text)

def read(name):
    return open(f"{work}/{name}", encoding="utf-8").read().rstrip("\n")

blocks = [
    ("README.md", "demo-output", "```text\n" + mask(read("demo")) + "\n```", "make demo (masked)"),
    ("docs/benchmarks.md", "bench-table", read("bench-table"), "bench table (bench/results.json)"),
]
drifted = False
for path, name, generated, source in blocks:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = open(path, encoding="utf-8").read()
    if start not in text or end not in text:
        sys.exit(f"{path} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    block, tail = rest.split(end, 1)
    wanted = f"\n{generated}\n"
    if mode == "--update":
        open(path, "w", encoding="utf-8").write(head + start + wanted + end + tail)
        print(f"{path}: {name} block written from {source}")
    elif block != wanted:
        drifted = True
        sys.stdout.writelines(difflib.unified_diff(
            block.splitlines(True), wanted.splitlines(True), f"{path} ({name})", source))
        print(f"\n{path}: the {name} block is not what {source} gives")
    else:
        print(f"{path}: the {name} block matches {source}")
if drifted:
    sys.exit("docs drifted from their generated output: run scripts/check-docs.sh --update")
PY
