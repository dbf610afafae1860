// net/src/redis/scripts.hpp — the Lua scripts of the Redis lock backend and
// of the fenced write. Redis runs a script atomically (no other command runs
// in between), which is what makes "SET NX + INCR" one step and
// "compare owner + delete" race-free.
//
// Keys (the lock name inside a hash tag, so that one lock's keys share a
// Redis Cluster slot; see redis_keys in redis_backend.cpp):
//   hwsync:lock:{<name>}           the lock: value = owner id, PX = lease
//   hwsync:lock:{<name>}:token     the fencing-token counter (INCR; never
//                                  expires, never deleted by the backend)
//   channel hwsync:lock:{<name>}:released   PUBLISHed on every release
// Scripts are sent with EVALSHA; on a NOSCRIPT reply (a fresh or restarted
// server, SCRIPT FLUSH) the connection sends SCRIPT LOAD and retries once.
#pragma once

#include <string_view>

namespace hwsync::net::redis::scripts {

// KEYS[1] lock, KEYS[2] token counter; ARGV[1] owner, ARGV[2] ttl in ms.
// Returns {1, token} when taken (Redisson's RFencedLock pattern: SET NX PX
// and INCR in one atomic step, so token order = acquisition order), {0,
// pttl} when someone else holds it (pttl: the holder's remaining lease in
// ms, which bounds how long a waiter sleeps without a release message).
// A lock already held by ARGV[1] itself is taken again, with a new token
// and a fresh lease: owners are unique per distributed_lock, which never
// acquires while it holds, so that key can only be left by an earlier
// attempt whose reply never arrived (it timed out on a stalled server);
// without this the owner would be locked out by itself until that lease
// ran out.
inline constexpr std::string_view acquire = R"lua(
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
)lua";

// KEYS[1] lock; ARGV[1] owner, ARGV[2] release channel.
// Deletes the lock only if ARGV[1] still owns it, and then tells waiters.
// Returns 1 if released, 0 if it was no longer ours.
inline constexpr std::string_view release = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
return 0
)lua";

// KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl in ms.
// Extends the lease only if ARGV[1] still owns the lock. Returns 1 or 0.
inline constexpr std::string_view renew = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua";

// KEYS[1] the data key, KEYS[2] its fence (the highest token that wrote it);
// ARGV[1] the writer's token (decimal, 1..2^64-1), ARGV[2] the value.
// Stores the value only if the token is >= the fence (the same holder may
// write several times; an older holder may not), and raises the fence.
// Returns {1, token} when written, {0, fence} when refused as stale.
// Tokens are compared as decimal strings (length, then bytes), not as Lua
// numbers, which are doubles and lose precision above 2^53.
inline constexpr std::string_view fenced_write = R"lua(
local token = ARGV[1]
if not string.match(token, '^[1-9][0-9]*$') or #token > 20 then
  return redis.error_reply('ERR hwsync fenced write: expected a token of 1 to 20 decimal digits, got ' .. token)
end
local fence = redis.call('GET', KEYS[2])
if fence and (#token < #fence or (#token == #fence and token < fence)) then
  return {0, fence}
end
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], ARGV[2])
return {1, token}
)lua";

}  // namespace hwsync::net::redis::scripts
