# The redis:// lock backend (included by net/CMakeLists.txt): RESP2 over the
# ring, replies parsed by hiredis's reader (Debian libhiredis-dev; only its
# redisReader, not its networking), Lua scripts for acquire/renew/release
# and the fenced write. It registers itself for the scheme (lock_backend.hpp).
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
target_sources(hwsync_net PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/connection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/fenced_write.cpp
  ${CMAKE_CURRENT_LIST_DIR}/redis_backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/resp.cpp
  ${CMAKE_CURRENT_LIST_DIR}/subscriber.cpp)
target_include_directories(hwsync_net PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hwsync_net PRIVATE PkgConfig::HIREDIS)
