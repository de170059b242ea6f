# sgt_host_isas(<out>): the instruction sets of sgt_dispatch_isas() that the configuring machine
# runs, lowest first, found by running cmake/host_isas.cpp once (the result is cached). In a cross
# build nothing runs at configure time and <out> is empty; where the probe fails to build or run,
# <out> is every instruction set, with a warning. The project's own build uses it; it is not
# installed.
include_guard(GLOBAL)
include(${CMAKE_CURRENT_LIST_DIR}/sgtDispatch.cmake)

function(sgt_host_isas out)
  if(CMAKE_CROSSCOMPILING)
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  if(NOT DEFINED CACHE{SGT_HOST_ISAS_PROBED})
    try_run(rc compiled ${CMAKE_BINARY_DIR}/sgt_host_isas
      ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/host_isas.cpp
      CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${PROJECT_SOURCE_DIR}/include"
      CXX_STANDARD 17
      RUN_OUTPUT_VARIABLE runs)
    sgt_dispatch_isas(all)
    if(NOT compiled OR NOT rc EQUAL 0)
      message(WARNING "cmake/host_isas.cpp did not run; taking every instruction set as runnable")
      set(runs ${all})
    endif()
    sgt_dispatch_isas_in(host ${runs})
    set(SGT_HOST_ISAS_PROBED "${host}" CACHE INTERNAL "sgt_host_isas()")
  endif()
  set(${out} "${SGT_HOST_ISAS_PROBED}" PARENT_SCOPE)
endfunction()
