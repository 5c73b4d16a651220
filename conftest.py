"""pytest reads this first, before any test imports numpy: importing the demo chooses numpy's BLAS thread
count from what else runs on this machine (mnist_demo.choose_blas_threads), so that the tests run fast on
a busy machine too. A count set in the environment (OPENBLAS_NUM_THREADS=2) is kept."""
import mnist_demo  # noqa: F401
