# The dependencies of the hashee INTERFACE targets (hashee::hashee, hashee::thrust,
# hashee::cuda); used by the build tree and by the installed package config alike, so both
# resolve them the same way.
# Inside a package config find_dependency reports a missing dependency through
# find_package(hashee); at the top level a missing one must stop the configure, clearly.
include(CMakeFindDependencyMacro)
macro(hashee_find_dependency)
  if(CMAKE_FIND_PACKAGE_NAME)
    find_dependency(${ARGN})
  else()
    find_package(${ARGN} REQUIRED)
  endif()
endmacro()
hashee_find_dependency(Eigen3 3.4 NO_MODULE)
hashee_find_dependency(nlohmann_json 3.10)
hashee_find_dependency(Threads)
if(NOT TARGET hashee_utf8proc)
  find_path(HASHEE_UTF8PROC_INCLUDE_DIR utf8proc.h)
  find_library(HASHEE_UTF8PROC_LIBRARY NAMES utf8proc)
  if(NOT HASHEE_UTF8PROC_INCLUDE_DIR OR NOT HASHEE_UTF8PROC_LIBRARY)
    message(FATAL_ERROR "hashee needs utf8proc (Debian: apt-get install libutf8proc-dev)")
  endif()
  add_library(hashee_utf8proc INTERFACE IMPORTED)
  set_target_properties(hashee_utf8proc PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${HASHEE_UTF8PROC_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${HASHEE_UTF8PROC_LIBRARY}")
endif()
# The optional parts, each for a target of its own (CMakeLists.txt): hashee::hashee needs none
# of them. The package config looks only for the parts that were installed
# (hashee_find_thrust, hashee_find_cuda); the build tree looks for both.
if(NOT DEFINED hashee_find_thrust)
  set(hashee_find_thrust ON)
endif()
if(NOT DEFINED hashee_find_cuda)
  set(hashee_find_cuda ON)
endif()
# Thrust (CCCL, shipped with the CUDA Toolkit) and OpenMP: the Thrust backend's CPU systems
# (include/hashee/backend/thrust.hpp), target hashee::thrust. Optional: without them hashee has
# eigen_cpu alone, hashee::thrust does not exist and HASHEE_HAS_THRUST stays OFF.
set(HASHEE_HAS_THRUST OFF)
if(hashee_find_thrust)
  if(NOT TARGET hashee_cccl)
    find_path(HASHEE_CCCL_INCLUDE_DIR thrust/version.h
              PATHS "$ENV{CUDA_PATH}/include/cccl" /usr/local/cuda/include/cccl /usr/local/cuda/include
              NO_DEFAULT_PATH)
    if(HASHEE_CCCL_INCLUDE_DIR)
      add_library(hashee_cccl INTERFACE IMPORTED)
      set_target_properties(hashee_cccl PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HASHEE_CCCL_INCLUDE_DIR}")
    endif()
  endif()
  if(NOT TARGET OpenMP::OpenMP_CXX)
    find_package(OpenMP QUIET COMPONENTS CXX)
  endif()
  if(TARGET hashee_cccl AND TARGET OpenMP::OpenMP_CXX)
    set(HASHEE_HAS_THRUST ON)
  endif()
endif()
# The CUDA Toolkit's libraries (cuBLAS, the runtime): target hashee::cuda, for sources nvcc
# compiles that include <hashee/backend/cuda.cuh>. Optional: HASHEE_HAS_CUDA says whether it
# was found (building hashee's own CUDA programs is -DHASHEE_CUDA=ON).
set(HASHEE_HAS_CUDA OFF)
if(hashee_find_cuda)
  if(NOT TARGET CUDA::cublas)
    find_package(CUDAToolkit QUIET)
  endif()
  if(TARGET CUDA::cublas AND TARGET CUDA::cudart)
    set(HASHEE_HAS_CUDA ON)
  endif()
endif()
if(HASHEE_REQUIRE_THRUST AND NOT HASHEE_HAS_THRUST)
  message(FATAL_ERROR "HASHEE_REQUIRE_THRUST: Thrust (CCCL: thrust/version.h under /usr/local/cuda/include/cccl "
                      "or $CUDA_PATH/include/cccl) and OpenMP are needed for the Thrust backend's tests")
endif()
# oneDNN (Debian: libdnnl-dev): eigen_cpu's products. Matmul primitives on weights prepacked at
# load into the blocked layout its kernels read; oneDNN picks those kernels for the instruction
# set at run time (AVX2, AVX-512, AVX512_BF16, AMX), so one build runs at speed on each.
# Debian's build threads through OpenMP: hashee runs every call on one thread from its own pool
# (omp_set_num_threads(1) in that thread, restored after), so the OpenMP library is linked (its
# functions only, no -fopenmp). Optional: without it Eigen does the products. (BLIS, once an
# alternative, was removed: Debian's BLIS 0.9 runs its generic kernels on Zen 5 and its haswell
# ones on Emerald Rapids, behind oneDNN on every encoder shape measured; docs/benchmarks.md.)
option(HASHEE_USE_DNNL "Use oneDNN for the CPU products when it is found" ON)
if(NOT TARGET hashee_dnnl)
  add_library(hashee_dnnl INTERFACE IMPORTED)
  set(HASHEE_HAS_DNNL OFF)
  if(HASHEE_USE_DNNL)
    find_package(dnnl CONFIG QUIET)
    find_package(OpenMP QUIET COMPONENTS CXX)
    if(TARGET DNNL::dnnl AND OpenMP_gomp_LIBRARY)
      set(HASHEE_HAS_DNNL ON)
      set_target_properties(hashee_dnnl PROPERTIES
        INTERFACE_LINK_LIBRARIES "DNNL::dnnl;${OpenMP_gomp_LIBRARY}"
        INTERFACE_COMPILE_DEFINITIONS "HASHEE_HAS_DNNL=1")
    endif()
  endif()
endif()
if(HASHEE_REQUIRE_DNNL AND NOT HASHEE_HAS_DNNL)
  message(FATAL_ERROR "HASHEE_REQUIRE_DNNL: oneDNN (find_package(dnnl); Debian: apt-get install libdnnl-dev) "
                      "and GCC's OpenMP library were not found, or HASHEE_USE_DNNL is OFF")
endif()
