// Consumer tests (add_subdirectory, FetchContent, find_package): a downstream program that includes hashee's umbrella header and
// uses it. Keep it this small -- it must keep compiling as the library grows, with no model.
#include <hashee/hashee.hpp>

#include <cstdio>
#include <string_view>

int main() {
    try {
        throw hashee::format_error("consumer: bad input");
    } catch (const hashee::error& e) {  // the typed error is a hashee::error (and a std::runtime_error)
        if (std::string_view(e.what()) != "consumer: bad input") {
            std::printf("unexpected what(): %s\n", e.what());
            return 1;
        }
        std::printf("hashee consumer: ok (%s)\n", HASHEE_CONSUMER_KIND);
        return 0;
    }
    return 1;
}
