# Included by every consumer (add_subdirectory, FetchContent, find_package) once hashee is
# there: one app per hashee target, and where each app ended up, one per line, for
# run_consumer.cmake to run.
#  - app: hashee::hashee alone (main.cpp checks it gets no OpenMP and no Eigen threading define);
#  - app_thrust: hashee::thrust, where HASHEE_CONSUMER_THRUST (hashee found Thrust and OpenMP);
#  - app_cuda: hashee::cuda, built by nvcc, where HASHEE_CONSUMER_CUDA.
# A target the consumer was told to expect must be there.
set(hashee_consumer_apps app)
add_executable(app ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
target_link_libraries(app PRIVATE hashee::hashee)

if(HASHEE_CONSUMER_THRUST)
  if(NOT TARGET hashee::thrust)
    message(FATAL_ERROR "hashee::thrust is missing although hashee found Thrust and OpenMP")
  endif()
  add_executable(app_thrust ${CMAKE_CURRENT_LIST_DIR}/main_thrust.cpp)
  target_link_libraries(app_thrust PRIVATE hashee::thrust)
  list(APPEND hashee_consumer_apps app_thrust)
endif()

if(HASHEE_CONSUMER_CUDA)
  if(NOT TARGET hashee::cuda)
    message(FATAL_ERROR "hashee::cuda is missing although the CUDA Toolkit is here")
  endif()
  add_executable(app_cuda ${CMAKE_CURRENT_LIST_DIR}/main_cuda.cu)
  target_link_libraries(app_cuda PRIVATE hashee::cuda)
  list(APPEND hashee_consumer_apps app_cuda)
endif()

set(hashee_consumer_paths "")
foreach(a IN LISTS hashee_consumer_apps)
  target_compile_definitions(${a} PRIVATE HASHEE_CONSUMER_KIND="${HASHEE_CONSUMER_KIND}")
  string(APPEND hashee_consumer_paths "$<TARGET_FILE:${a}>\n")
endforeach()
file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/app-path-$<CONFIG>.txt CONTENT "${hashee_consumer_paths}")
