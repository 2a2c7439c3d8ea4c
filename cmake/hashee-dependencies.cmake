# The dependencies of the hashee INTERFACE target; used by the build tree and by the
# installed package config alike, so both resolve them the same way.
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
# Thrust (CCCL, shipped with the CUDA Toolkit) and OpenMP: the Thrust backend's CPU systems
# (include/hashee/backend/thrust.hpp). Optional: without them hashee has eigen_cpu alone and
# HASHEE_HAS_THRUST stays undefined. EIGEN_DONT_PARALLELIZE keeps Eigen's products off
# OpenMP's threads (eigen_cpu brings its own pool; thrust_omp splits the work itself).
if(NOT TARGET hashee_thrust)
  add_library(hashee_thrust INTERFACE IMPORTED)
  find_path(HASHEE_CCCL_INCLUDE_DIR thrust/version.h
            PATHS "$ENV{CUDA_PATH}/include/cccl" /usr/local/cuda/include/cccl /usr/local/cuda/include
            NO_DEFAULT_PATH)
  find_package(OpenMP QUIET COMPONENTS CXX)
  set(HASHEE_HAS_THRUST OFF)
  if(HASHEE_CCCL_INCLUDE_DIR AND OpenMP_CXX_FOUND)
    set(HASHEE_HAS_THRUST ON)
    set_target_properties(hashee_thrust PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${HASHEE_CCCL_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES OpenMP::OpenMP_CXX
      INTERFACE_COMPILE_OPTIONS "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>"
      INTERFACE_COMPILE_DEFINITIONS "HASHEE_HAS_THRUST=1;EIGEN_DONT_PARALLELIZE")
  endif()
endif()
if(HASHEE_REQUIRE_THRUST AND NOT HASHEE_HAS_THRUST)
  message(FATAL_ERROR "HASHEE_REQUIRE_THRUST: Thrust (CCCL: thrust/version.h under /usr/local/cuda/include/cccl "
                      "or $CUDA_PATH/include/cccl) and OpenMP are needed for the Thrust backend's tests")
endif()
# BLIS, single-threaded (Debian: libblis-serial-dev): the CPU GEMMs (eigen_cpu's linear and the
# Thrust CPU systems' products) go through bli_sgemm, 1.15-1.25x Eigen's products on our 2-core EPYC
# (docs/benchmarks.md). Optional: without it Eigen does the products and HASHEE_HAS_BLIS stays
# undefined. hashee does the threading itself and calls BLIS from its workers; BLIS is
# thread-safe and runs each call on one thread unless BLIS_NUM_THREADS says otherwise.
option(HASHEE_USE_BLIS "Use BLIS for the CPU GEMMs when it is found" ON)
if(NOT TARGET hashee_blis)
  add_library(hashee_blis INTERFACE IMPORTED)
  set(HASHEE_HAS_BLIS OFF)
  if(HASHEE_USE_BLIS)
    find_path(HASHEE_BLIS_INCLUDE_DIR blis.h PATH_SUFFIXES blis x86_64-linux-gnu/blis-serial aarch64-linux-gnu/blis-serial)
    find_library(HASHEE_BLIS_LIBRARY NAMES blis
                 PATHS /usr/lib/x86_64-linux-gnu/blis-serial /usr/lib/aarch64-linux-gnu/blis-serial)
    if(HASHEE_BLIS_INCLUDE_DIR AND HASHEE_BLIS_LIBRARY)
      set(HASHEE_HAS_BLIS ON)
      set_target_properties(hashee_blis PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${HASHEE_BLIS_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES "${HASHEE_BLIS_LIBRARY}"
        INTERFACE_COMPILE_DEFINITIONS "HASHEE_HAS_BLIS=1")
    endif()
  endif()
endif()
if(HASHEE_REQUIRE_BLIS AND NOT HASHEE_HAS_BLIS)
  message(FATAL_ERROR "HASHEE_REQUIRE_BLIS: BLIS (blis.h and libblis; Debian: apt-get install libblis-serial-dev) "
                      "was not found, or HASHEE_USE_BLIS is OFF")
endif()
