#pragma once
// Umbrella header: everything public in hashee.
#include <hashee/error.hpp>
