// quickstart.cpp built by nvcc: the thrust_backend<thrust_cuda> branch.
#include "quickstart.cpp"
