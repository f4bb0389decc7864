// Test fixture for the integration tests that need a front and one worker
// (serving the tiny TEST FIXTURE model) running before each test.
#pragma once

#include "gtest/gtest.h"
#include "tests/integration/service_harness.h"

namespace sparsevid::integration {

class RunningServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h_.StartFront().ok()) << h_.front().Stderr();
    auto w = h_.StartWorker();
    ASSERT_TRUE(w.ok()) << w.status();
  }
  ServiceHarness h_;
};

}  // namespace sparsevid::integration
