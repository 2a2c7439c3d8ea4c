# The CUDA backend's headers need no Eigen and no oneDNN (cmake -P; CTest headers.cuda_without_eigen).
#   CXX      the C++ compiler: compiles <hashee/backend/thrust_backend.hpp> (-fsyntax-only)
#   NVCC     nvcc, or empty: compiles <hashee/backend/cuda.cuh> (an object, no GPU needed)
#   INCLUDE  hashee's include dir; CCCL: CCCL's include dir for CXX (nvcc brings its own)
#   WORK     a scratch directory
# Neither compiler is given an Eigen, oneDNN or OpenMP include dir, and the list of files each
# translation unit includes (-M) must name none of them.
cmake_minimum_required(VERSION 3.21)
foreach(var IN ITEMS CXX INCLUDE CCCL WORK)
  if("${${var}}" STREQUAL "")
    message(FATAL_ERROR "headers_without_eigen.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

function(check_closure what deps_file)
  file(READ ${deps_file} deps)
  string(REGEX MATCHALL "[^ \t\r\n\\\\]*(Eigen/|unsupported/Eigen|oneapi/dnnl/dnnl\\.h|/omp\\.h)[^ \t\r\n\\\\]*" found "${deps}")
  if(found)
    list(REMOVE_DUPLICATES found)
    message(FATAL_ERROR "${what} includes ${found}")
  endif()
  string(REGEX MATCHALL "hashee/[a-z_/]+\\.(hpp|cuh)" own "${deps}")
  list(REMOVE_DUPLICATES own)
  list(LENGTH own n)
  message(STATUS "${what}: ${n} hashee headers, none of Eigen, oneDNN or OpenMP")
endfunction()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
endfunction()

# g++: the generic template, with the shape checks and the functors it uses.
file(WRITE ${WORK}/thrust_backend.cpp "#include <hashee/backend/thrust_backend.hpp>\n")
set(cxx_args -std=c++20 -I${INCLUDE} -I${CCCL} ${WORK}/thrust_backend.cpp)
run("${CXX} -fsyntax-only thrust_backend.hpp" ${CXX} -fsyntax-only -Wall -Wextra -Werror ${cxx_args})
run("${CXX} -M thrust_backend.hpp" ${CXX} -M -MF ${WORK}/thrust_backend.d ${cxx_args})
check_closure("thrust_backend.hpp (${CXX})" ${WORK}/thrust_backend.d)

# nvcc: the CUDA system, thrust_backend<thrust_cuda> and its static_assert against the concept.
if(NVCC)
  file(WRITE ${WORK}/cuda.cu "#include <hashee/backend/cuda.cuh>\nint main() { return 0; }\n")
  set(nvcc_args -std=c++20 --expt-relaxed-constexpr -I${INCLUDE} ${WORK}/cuda.cu)
  run("nvcc -c cuda.cuh" ${NVCC} -c ${nvcc_args} -o ${WORK}/cuda.o)
  run("nvcc -M cuda.cuh" ${NVCC} -M ${nvcc_args} -o ${WORK}/cuda.d)
  check_closure("cuda.cuh (nvcc)" ${WORK}/cuda.d)
else()
  message(STATUS "cuda.cuh: no nvcc here, only thrust_backend.hpp checked")
endif()
