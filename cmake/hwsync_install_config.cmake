# Writes and installs hwsyncConfig.cmake and its version file, so that
#   find_package(hwsync REQUIRED COMPONENTS primitives)
# loads hwsync::primitives and what it depends on.
include(CMakePackageConfigHelpers)
set(HWSYNC_CONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/hwsync)
configure_package_config_file(cmake/hwsyncConfig.cmake.in
  ${PROJECT_BINARY_DIR}/hwsyncConfig.cmake INSTALL_DESTINATION ${HWSYNC_CONFIG_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/hwsyncConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/hwsyncConfig.cmake ${PROJECT_BINARY_DIR}/hwsyncConfigVersion.cmake
        DESTINATION ${HWSYNC_CONFIG_DIR})
install(FILES ${HWSYNC_GENERATED_INCLUDE}/hwsync/config.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/hwsync)
