# cmake -P: the capability attributes on hwsync::mutex work with clang's
# -Wthread-safety: correct code compiles clean, an unguarded write is an error.
set(flags -std=c++20 -fsyntax-only -Wthread-safety -Werror ${INCLUDES})
execute_process(COMMAND ${CLANG} ${flags} ${SRC}/guarded.cpp RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "guarded.cpp should compile clean under -Wthread-safety:\n${err}")
endif()
execute_process(COMMAND ${CLANG} ${flags} -DHWSYNC_PLANT_UNGUARDED_WRITE ${SRC}/guarded.cpp
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "requires holding mutex 'm_' exclusively")
  message(FATAL_ERROR "the planted unguarded write should be a -Wthread-safety error, got (${rc}):\n${err}")
endif()
message(STATUS "thread-safety analysis: ok")
