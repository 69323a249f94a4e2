.PHONY: tools demo test lint e2e sam-local bench bench-instructions

## Install the tools the tests and the local stack use (PyPI, npm).
tools:
	bash scripts/install-tools.sh

## The main job on a local stack: embedded DynamoDB, template tables, seed data.
demo:
	cargo run --quiet -p devstack -- demo

## Everything CI runs.
test: tools
	bash scripts/test.sh

lint:
	bash infra/lint.sh

e2e:
	bash scripts/e2e.sh

## sam build, then sam local invoke for every function against local stand-ins; sets up
## the container engine and a local Lambda base image if needed (docs/sam-local.md).
sam-local: tools
	bash scripts/sam-local.sh

## Release builds, then the benchmark on the local stack: a table and bench/results.json.
bench:
	bash scripts/bench.sh

## Instructions per deleted cart (callgrind): compares release profiles on a shared machine.
bench-instructions:
	bash scripts/bench-instructions.sh
