# Integration tests: the real edge_gateway binary on loopback. Paths are
# compiled in (gtest_discover_tests mangles multi-variable ENVIRONMENT
# lists); EDGE_GATEWAY / EDGE_TEST_MODELS in the environment override them.
if(TARGET edge_gateway)
  add_executable(gateway_integration_test gateway_integration_test.cc
    ${CMAKE_SOURCE_DIR}/tests/testing/gateway_process.cc)
  target_link_libraries(gateway_integration_test PRIVATE edge_server
    PkgConfig::TURBOJPEG PkgConfig::SPNG GTest::gtest GTest::gtest_main
    GTest::gmock)
  target_compile_definitions(gateway_integration_test PRIVATE
    EDGE_GATEWAY_BINARY="$<TARGET_FILE:edge_gateway>"
    EDGE_TEST_MODELS_DIR="${CMAKE_BINARY_DIR}/test-models")
  add_dependencies(gateway_integration_test edge_gateway)
  edge_strict(gateway_integration_test)
  gtest_discover_tests(gateway_integration_test DISCOVERY_TIMEOUT 60
    PROPERTIES FIXTURES_REQUIRED engine_models TIMEOUT 300)
endif()
