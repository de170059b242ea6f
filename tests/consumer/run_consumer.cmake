# Configures, builds and runs tests/consumer against this sgt-cpp tree.
# -DSGT_SOURCE_DIR, -DSGT_BINARY_DIR (a configured build of sgt-cpp), -DWORK_DIR, -DMODE.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

set(args -DMODE=${MODE})
if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} --install ${SGT_BINARY_DIR} --prefix ${WORK_DIR}/prefix)
  list(APPEND args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  list(APPEND args -DSGT_SOURCE_DIR=${SGT_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} -S ${SGT_SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build ${args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
