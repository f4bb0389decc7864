#include "kernels/cpu/host_allocator.h"

#include <cstdlib>
#include <new>

#include "kernels/check.h"

namespace sparsevid::kernels {
namespace {

constexpr size_t kAlignment = 64;

// Lives in the first kAlignment bytes of each block; the data follows it so
// the data pointer keeps the 64-byte alignment.
struct BlockHeader {
  std::shared_ptr<HostMemoryAccount> account;
  size_t bytes;
};
static_assert(sizeof(BlockHeader) <= kAlignment, "header must fit the alignment pad");

void FreeHost(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kAlignment;
  auto* header = reinterpret_cast<BlockHeader*>(base);
  if (header->account) header->account->Release(static_cast<int64_t>(header->bytes));
  header->~BlockHeader();
  std::free(base);
}

}  // namespace

void HostMemoryAccount::Charge(int64_t bytes) {
  const int64_t now = live_.fetch_add(bytes) + bytes;
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void HostMemoryAccount::Release(int64_t bytes) { live_.fetch_sub(bytes); }

std::shared_ptr<Storage> AllocateHost(size_t bytes,
                                      const std::shared_ptr<HostMemoryAccount>& account) {
  // Round the payload up so aligned_alloc's size rule (multiple of the
  // alignment) holds.
  const size_t payload = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* base = std::aligned_alloc(kAlignment, kAlignment + payload);
  SV_CHECK(base != nullptr, "host allocation of %zu bytes failed", bytes);
  new (base) BlockHeader{account, bytes};
  if (account) account->Charge(static_cast<int64_t>(bytes));
  return std::make_shared<Storage>(static_cast<char*>(base) + kAlignment, bytes,
                                   DeviceKind::kCpu, &FreeHost);
}

const std::shared_ptr<HostMemoryAccount>& GlobalHostAccount() {
  static const auto* account = new std::shared_ptr<HostMemoryAccount>(
      std::make_shared<HostMemoryAccount>());
  return *account;
}

}  // namespace sparsevid::kernels
