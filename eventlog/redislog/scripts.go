package redislog

import "github.com/redis/go-redis/v9"

// Each script reads and writes only the two keys of one conversation, which
// share a hash tag and so a Redis Cluster slot. The #!lua line makes Redis
// refuse a script up front when it is out of memory, instead of failing it
// halfway; with the batch validated before it is sent, an append lands whole
// or not at all.
//
// The meta hash holds epoch, first (first retained seq), last (last seq) and
// id (the log's identity, made when the hash is). Stream entries have the
// explicit id "<seq>-0".

// ARGV: epoch, the id a new log gets.
var claimScript = redis.NewScript(`#!lua
local cur = redis.call('HGET', KEYS[1], 'epoch')
if cur and tonumber(cur) > tonumber(ARGV[1]) then
  return {'FENCED', cur}
end
if not cur then
  redis.call('HSET', KEYS[1], 'first', 1, 'last', 0)
end
redis.call('HSETNX', KEYS[1], 'id', ARGV[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'first', 'last', 'epoch', 'id')
return {'OK', v[1], v[2], v[3], v[4]}
`)

// ARGV: epoch, time (unix nanoseconds), then type, client id, data for each
// event.
var appendScript = redis.NewScript(`#!lua
local cur = redis.call('HGET', KEYS[1], 'epoch')
if not cur then
  return {'UNKNOWN'}
end
if tonumber(cur) > tonumber(ARGV[1]) then
  return {'FENCED', cur}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
for i = 3, #ARGV, 3 do
  last = last + 1
  redis.call('XADD', KEYS[2], last .. '-0', 't', ARGV[i], 'c', ARGV[i+1], 'd', ARGV[i+2], 'e', ARGV[1], 'ts', ARGV[2])
end
redis.call('HSET', KEYS[1], 'last', last, 'epoch', ARGV[1])
return {'OK', tostring(last)}
`)

// ARGV: epoch, how many events to keep.
var trimScript = redis.NewScript(`#!lua
local v = redis.call('HMGET', KEYS[1], 'first', 'last', 'epoch')
if not v[1] then
  return {'UNKNOWN'}
end
if tonumber(v[3]) > tonumber(ARGV[1]) then
  return {'FENCED', v[3]}
end
local first, last = tonumber(v[1]), tonumber(v[2])
local keepFrom = last - tonumber(ARGV[2]) + 1
if keepFrom > first then
  redis.call('XTRIM', KEYS[2], 'MINID', keepFrom .. '-0')
  redis.call('HSET', KEYS[1], 'first', keepFrom)
end
return {'OK'}
`)
