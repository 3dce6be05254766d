edge_gtest(dynamic_batcher_test dynamic_batcher_test.cc)
target_link_libraries(dynamic_batcher_test PRIVATE absl::synchronization
  absl::status absl::statusor absl::time GTest::gmock Threads::Threads)

edge_gtest(config_test config_test.cc)
target_link_libraries(config_test PRIVATE edge_server GTest::gmock)
