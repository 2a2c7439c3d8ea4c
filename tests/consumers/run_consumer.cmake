# Driver for the consumer tests (cmake -P). Two modes:
#   MODE=install   SETTINGS HASHEE_BINARY_DIR PREFIX CONFIG
#       install the configured hashee build into a fresh PREFIX and check the package files.
#   MODE=consumer  SETTINGS CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR CONFIG [PREFIX]
#       configure the consumer from scratch with this build's generator, compiler, flags and
#       CMAKE_PREFIX_PATH, build it, run its `app` and check what it prints.
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS MODE SETTINGS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()
include(${SETTINGS})

function(run_step what)
  string(REPLACE ";" " " pretty "${ARGN}")
  message(STATUS "[${what}] ${pretty}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${what}] failed (${rc})")
  endif()
endfunction()

set(config_args)
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config ${CONFIG})
endif()

function(require)
  foreach(var IN LISTS ARGN)
    if("${${var}}" STREQUAL "")
      message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
    endif()
  endforeach()
endfunction()

if(MODE STREQUAL "install")
  require(HASHEE_BINARY_DIR PREFIX)
  unset(ENV{DESTDIR})
  file(REMOVE_RECURSE ${PREFIX})
  run_step(install ${CMAKE_COMMAND} --install ${HASHEE_BINARY_DIR} --prefix ${PREFIX} ${config_args})
  set(pkg ${PREFIX}/${HASHEE_INSTALL_LIBDIR}/cmake/hashee)
  set(expected ${pkg}/hasheeConfig.cmake ${pkg}/hasheeConfigVersion.cmake
               ${pkg}/hasheeTargets.cmake ${pkg}/hashee-dependencies.cmake
               ${PREFIX}/${HASHEE_INSTALL_INCLUDEDIR}/hashee/hashee.hpp)
  if(HASHEE_CONSUMER_THRUST)
    list(APPEND expected ${pkg}/hashee-thrust-targets.cmake)
  endif()
  if(HASHEE_CONSUMER_CUDA)
    list(APPEND expected ${pkg}/hashee-cuda-targets.cmake)
  endif()
  foreach(f IN LISTS expected)
    if(NOT EXISTS ${f})
      message(FATAL_ERROR "[install] ${f} was not installed")
    endif()
  endforeach()
  message(STATUS "[install] hashee installed into ${PREFIX}")
  return()
endif()

if(NOT MODE STREQUAL "consumer")
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

require(CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR)
# A fresh tree every time: nothing cached from an earlier run can hide a problem.
file(REMOVE_RECURSE ${CONSUMER_BINARY_DIR})
file(MAKE_DIRECTORY ${CONSUMER_BINARY_DIR})

# Everything but the generator goes through an initial-cache file (lists survive intact).
set(init "")
foreach(var IN ITEMS CMAKE_MAKE_PROGRAM CMAKE_TOOLCHAIN_FILE CMAKE_CXX_COMPILER
                     CMAKE_CXX_COMPILER_LAUNCHER CMAKE_CXX_FLAGS CMAKE_CONFIGURATION_TYPES
                     CMAKE_CUDA_COMPILER HASHEE_SOURCE_DIR HASHEE_CONSUMER_THRUST HASHEE_CONSUMER_CUDA)
  if(DEFINED ${var})
    string(APPEND init "set(${var} [==[${${var}}]==] CACHE STRING \"\")\n")
  endif()
endforeach()
set(prefix_path ${CMAKE_PREFIX_PATH})
if(DEFINED PREFIX)
  # find_package consumer: the fresh install first; never the user package registry.
  list(PREPEND prefix_path ${PREFIX})
  string(APPEND init
    "set(HASHEE_EXPECTED_PREFIX [==[${PREFIX}]==] CACHE PATH \"\")\n"
    "set(HASHEE_EXPECTED_VERSION [==[${HASHEE_VERSION}]==] CACHE STRING \"\")\n"
    "set(CMAKE_FIND_USE_PACKAGE_REGISTRY OFF CACHE BOOL \"\")\n")
endif()
if(prefix_path)
  string(APPEND init "set(CMAKE_PREFIX_PATH [==[${prefix_path}]==] CACHE STRING \"\")\n")
endif()
string(APPEND init "set(CMAKE_BUILD_TYPE [==[${CONFIG}]==] CACHE STRING \"\")\n")
file(WRITE ${CONSUMER_BINARY_DIR}/init-cache.cmake "${init}")

set(generator_args -G ${CMAKE_GENERATOR})
if(CMAKE_GENERATOR_PLATFORM)
  list(APPEND generator_args -A ${CMAKE_GENERATOR_PLATFORM})
endif()
if(CMAKE_GENERATOR_TOOLSET)
  list(APPEND generator_args -T ${CMAKE_GENERATOR_TOOLSET})
endif()

run_step(configure ${CMAKE_COMMAND} ${generator_args} -C ${CONSUMER_BINARY_DIR}/init-cache.cmake
         -S ${CONSUMER_SOURCE_DIR} -B ${CONSUMER_BINARY_DIR})
run_step(build ${CMAKE_COMMAND} --build ${CONSUMER_BINARY_DIR} ${config_args})

# The consumer writes where its apps ended up (the place differs between generators), one
# per line: one app per hashee target it uses (apps.cmake). Each must run and say so.
set(path_file ${CONSUMER_BINARY_DIR}/app-path-${CONFIG}.txt)
if(NOT EXISTS ${path_file})
  message(FATAL_ERROR "[run] ${path_file} missing: the consumer did not record its apps")
endif()
file(STRINGS ${path_file} apps)
if(NOT apps)
  message(FATAL_ERROR "[run] ${path_file} lists no app")
endif()
foreach(app IN LISTS apps)
  message(STATUS "[run] ${app}")
  execute_process(COMMAND ${app} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[run] ${app} failed (${rc})")
  endif()
  if(NOT out MATCHES "hashee consumer: ok")
    message(FATAL_ERROR "[run] ${app} did not print 'hashee consumer: ok'")
  endif()
endforeach()
