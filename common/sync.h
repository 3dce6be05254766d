// Synchronisation types of the cache module: Abseil's, under names of our
// own. The ThreadSanitizer build (tests/tsan) substitutes its own version
// of this header, built on std::mutex, because Debian's libabsl is not
// compiled with -fsanitize=thread and TSan cannot see its locking.
#ifndef EDGE_COMMON_SYNC_H_
#define EDGE_COMMON_SYNC_H_

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace edge {

using Mutex = absl::Mutex;
using MutexLock = absl::MutexLock;
using CondVar = absl::CondVar;
using Notification = absl::Notification;

}  // namespace edge

#endif  // EDGE_COMMON_SYNC_H_
