# Included by the add_subdirectory and FetchContent consumers after hashee was added from
# ${hashee_added_dir}.
# hashee is not the top-level project here: none of its own tests, examples or benchmarks.
foreach(opt IN ITEMS HASHEE_BUILD_TESTS HASHEE_BUILD_EXAMPLES HASHEE_BUILD_BENCH)
  if(${opt})
    message(FATAL_ERROR "${opt} is ON although hashee is a subproject")
  endif()
endforeach()
if(TARGET hashee_headers OR TARGET hashee_test_main)
  message(FATAL_ERROR "hashee's tests were added although hashee is a subproject")
endif()
get_directory_property(hashee_subdirs DIRECTORY ${hashee_added_dir} SUBDIRECTORIES)
list(FILTER hashee_subdirs INCLUDE REGEX "/(tests|examples|bench)$")
if(hashee_subdirs)
  message(FATAL_ERROR "hashee added ${hashee_subdirs} although it is a subproject")
endif()
