# Integration tests: the real edge_gateway binary on loopback. Paths are
# compiled in (gtest_discover_tests mangles multi-variable ENVIRONMENT
# lists); EDGE_GATEWAY / EDGE_TEST_MODELS in the environment override them.
#   gateway_integration_test  serving, errors, batching, metrics, drain
#   gateway_cache_test        expert cache: profile warm-up, access trace,
#                             failure policies
#   gateway_integrity_test    expert files rewritten, replaced or truncated
#                             while serving
#   gateway_memory_test       memory bound and fair decoding under bursts
#   gateway_stream_age_test   max_stream_age_ms and max_connection_age_ms
if(TARGET edge_gateway)
  foreach(test gateway_integration_test gateway_cache_test
          gateway_integrity_test gateway_memory_test gateway_stream_age_test)
    add_executable(${test} ${test}.cc
      ${CMAKE_SOURCE_DIR}/tests/testing/gateway_process.cc)
    target_link_libraries(${test} PRIVATE edge_server
      PkgConfig::TURBOJPEG PkgConfig::SPNG GTest::gtest GTest::gtest_main
      GTest::gmock)
    target_compile_definitions(${test} PRIVATE
      EDGE_GATEWAY_BINARY="$<TARGET_FILE:edge_gateway>"
      EDGE_TEST_MODELS_DIR="${CMAKE_BINARY_DIR}/test-models"
      EDGE_REPO_MODELS_DIR="${CMAKE_SOURCE_DIR}/models")
    add_dependencies(${test} edge_gateway)
    edge_strict(${test})
    gtest_discover_tests(${test} DISCOVERY_TIMEOUT 60
      PROPERTIES FIXTURES_REQUIRED engine_models TIMEOUT 300)
  endforeach()
endif()
