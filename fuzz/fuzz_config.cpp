// libFuzzer harness: hashee's config reader (see targets.hpp for what it checks).
#include "targets.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_config(data, size);
    return 0;
}
