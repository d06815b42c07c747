.PHONY: run test
run:  ## set up and run the pipeline on the bundled sample feeds (SQLite)
	./scripts/run
test:  ## set up and run the whole test suite
	./scripts/test
