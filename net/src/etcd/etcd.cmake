# The etcd client (included by net/CMakeLists.txt): etcd's v3 API over gRPC
# on cleartext HTTP/2, spoken on the ring. nghttp2 (Debian libnghttp2-dev)
# is the HTTP/2 state machine — it does no I/O, the ring feeds it bytes;
# protobuf (libprotobuf-dev, protoc from protobuf-compiler) encodes the
# messages of etcd_api.proto, the subset of etcd's API the client uses,
# compiled here at build time.
#
# Libraries are linked by path, not through imported targets, so that the
# exported static hwsync_net names files a consumer can link without
# re-running these find modules.
find_package(Protobuf REQUIRED)
pkg_check_modules(NGHTTP2 REQUIRED libnghttp2)

set(etcd_proto_out ${CMAKE_CURRENT_BINARY_DIR}/etcd_generated)
file(MAKE_DIRECTORY ${etcd_proto_out})
add_custom_command(
  OUTPUT ${etcd_proto_out}/etcd_api.pb.cc ${etcd_proto_out}/etcd_api.pb.h
  COMMAND ${Protobuf_PROTOC_EXECUTABLE} --cpp_out=${etcd_proto_out}
          --proto_path=${CMAKE_CURRENT_LIST_DIR} ${CMAKE_CURRENT_LIST_DIR}/etcd_api.proto
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/etcd_api.proto ${Protobuf_PROTOC_EXECUTABLE}
  COMMENT "protoc: etcd_api.proto -> C++"
  VERBATIM)

# Generated code is protoc's, not ours: built without the project's
# -Werror set, and its header is a system include for our sources.
add_library(hwsync_etcd_proto OBJECT ${etcd_proto_out}/etcd_api.pb.cc)
set_target_properties(hwsync_etcd_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_features(hwsync_etcd_proto PRIVATE cxx_std_20)
target_include_directories(hwsync_etcd_proto SYSTEM PRIVATE ${etcd_proto_out}
                           ${Protobuf_INCLUDE_DIRS})

target_sources(hwsync_net PRIVATE
  $<TARGET_OBJECTS:hwsync_etcd_proto>
  ${CMAKE_CURRENT_LIST_DIR}/etcd_backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_barrier.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_client.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_election.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_guarded_write.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_semaphore.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_session.cpp
  ${CMAKE_CURRENT_LIST_DIR}/etcd_wait.cpp
  ${CMAKE_CURRENT_LIST_DIR}/grpc_channel.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lease_keeper.cpp)
target_include_directories(hwsync_net SYSTEM PRIVATE ${etcd_proto_out} ${Protobuf_INCLUDE_DIRS}
                           ${NGHTTP2_INCLUDE_DIRS})
target_link_libraries(hwsync_net PRIVATE ${Protobuf_LIBRARIES} ${NGHTTP2_LINK_LIBRARIES})
add_dependencies(hwsync_net hwsync_etcd_proto)
