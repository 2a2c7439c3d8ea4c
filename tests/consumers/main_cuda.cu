// Consumer tests: a downstream program of hashee::cuda, compiled by nvcc. It builds
// thrust_backend<thrust_cuda> and touches no device, so it runs on a machine without a GPU.
#include <hashee/backend/cuda.cuh>

#include <cstdio>

static_assert(hashee::backend<hashee::thrust_backend<hashee::thrust_cuda>>);

int main() {
    std::printf("hashee consumer: ok (%s, hashee::cuda)\n", HASHEE_CONSUMER_KIND);
    return 0;
}
