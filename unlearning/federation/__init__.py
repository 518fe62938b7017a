"""Federation on Flower (Message API): the apps, the in-process grid, the server algorithms, runtimes."""
