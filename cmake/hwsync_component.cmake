# hwsync_component(NAME SOURCES... [DEPENDS targets...] [PRIVATE_LIBS libs...])
# One component folder is one library target hwsync_<NAME>, exported as
# hwsync::<NAME>, headers under <NAME>/include, installed with its own export
# set so find_package(hwsync COMPONENTS <NAME>) can load just it.
function(hwsync_component name)
  cmake_parse_arguments(arg "" "" "SOURCES;DEPENDS;PUBLIC_LIBS;PRIVATE_LIBS" ${ARGN})
  set(target hwsync_${name})
  add_library(${target} ${arg_SOURCES})
  add_library(hwsync::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME hwsync_${name}
                                             POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${HWSYNC_GENERATED_INCLUDE}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${arg_DEPENDS} ${arg_PUBLIC_LIBS} PRIVATE ${arg_PRIVATE_LIBS})
  hwsync_warnings(${target})
  install(TARGETS ${target} EXPORT hwsync_${name}_targets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT hwsync_${name}_targets NAMESPACE hwsync:: FILE hwsync_${name}_targets.cmake
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hwsync)
endfunction()

function(hwsync_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic $<$<BOOL:${HWSYNC_WERROR}>:-Werror>)
endfunction()
