// ListJobs page tokens: opaque (the admission number they carry is
// encrypted, so a client learns nothing of other owners' jobs from them),
// valid only for the caller they were given to and the front that made
// them; anything else is INVALID_ARGUMENT naming page_token, never a crash.
#include "server/page_token.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace sparsevid::front {
namespace {

const std::string kKey = "0123456789abcdef";  // 16 bytes, fixed for the test

void ExpectRefused(const absl::StatusOr<uint64_t>& r, const std::string& what) {
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what;
  EXPECT_EQ(r.status().message().rfind("page_token: ", 0), 0u) << r.status();
}

TEST(PageTokensTest, RoundTripsForItsOwnerOnly) {
  const PageTokens tokens(kKey);
  for (uint64_t position : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{1000},
                            uint64_t{1} << 40, ~uint64_t{0}}) {
    for (const char* owner : {"", "alice", "ops.team"}) {
      const std::string t = tokens.Encode(position, owner);
      auto back = tokens.Decode(t, owner);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, position);
    }
  }
  // Another caller's token (even of the same position) does not decode.
  const std::string alices = tokens.Encode(7, "alice");
  EXPECT_NE(alices, tokens.Encode(7, "bob"));
  ExpectRefused(tokens.Decode(alices, "bob"), "foreign");
  ExpectRefused(tokens.Decode(alices, ""), "foreign, auth off");
  // Another front's (or this one's before a restart: a new random key).
  ExpectRefused(PageTokens().Decode(alices, "alice"), "stale");
  ExpectRefused(PageTokens("fedcba9876543210").Decode(alices, "alice"), "other key");
}

TEST(PageTokensTest, TokensAreOpaque) {
  const PageTokens tokens;  // a random key, as in the front
  uint64_t parsed = 0;
  for (uint64_t position : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{123456789}}) {
    const std::string t = tokens.Encode(position, "alice");
    // Always 16 bytes of URL-safe base64, whatever the number is.
    EXPECT_EQ(t.size(), 22u) << t;
    EXPECT_EQ(t.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << t;
    EXPECT_FALSE(absl::SimpleAtoi(t, &parsed)) << t;
  }
  EXPECT_EQ(tokens.Encode(123456789, "alice").find("123456789"), std::string::npos);
  // Neighbouring positions share nothing visible.
  const std::string a = tokens.Encode(41, "alice"), b = tokens.Encode(42, "alice");
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, 8) << a << " " << b;
}

TEST(PageTokensTest, MalformedAndForgedTokensAreInvalidArgument) {
  const PageTokens tokens(kKey);
  const std::string good = tokens.Encode(5, "alice");
  std::string flipped = good;
  flipped[3] = flipped[3] == 'A' ? 'B' : 'A';
  const std::string cases[] = {
      "",           "garbage",       "1",        "5",  "18446744073709551615",
      "-1",         good.substr(1),  good + "A", "!!!!!!!!!!!!!!!!!!!!!!",
      flipped,      std::string(22, 'A'),        std::string(4096, 'x'),
      std::string("\0\xff\x80", 3),
  };
  for (const std::string& t : cases) ExpectRefused(tokens.Decode(t, "alice"), t);
}

}  // namespace
}  // namespace sparsevid::front
