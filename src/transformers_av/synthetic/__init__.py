"""Generated media and learnable audio-visual tasks: everything the demo, the training recipes, the benchmarks and
the tests run on where no dataset can be downloaded."""
