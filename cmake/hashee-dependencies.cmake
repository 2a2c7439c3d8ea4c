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
