-- wrk script: every request differs from the last 99,999 in one header.
--
--     wrk -t1 -c50 -d10s --latency -s benchmarks/distinct_requests.lua http://127.0.0.1:8080/fast
--
-- With wrk's default single request a server could answer from a cache of the bytes it saw
-- before and never parse again; here the requests cycle through 100,000 prebuilt ones, so
-- nothing can be answered from such a cache. Each is exactly what wrk would send anyway
-- (method and path from the URL, HTTP/1.1, Host, any -H headers) with one short header of
-- fixed width added last, "X-Id: 00000" to "X-Id: 99999": every request has the same size,
-- 13 bytes more than the plain one.
--
-- The requests are built in init(), not in request(): wrk calls request() once per request
-- on its hot path, where string building would slow wrk down more than the server.

-- wrk loads this file into a Lua state of its own per thread (and one more, for setup()),
-- so the table and the position below exist once per thread, and so does the whole cycle.

local DISTINCT = 100000
-- Where each thread starts in the cycle, as a fraction of it: two threads must not send the
-- same bytes at the same moment. The golden section keeps any number of threads far apart
-- without knowing how many there are.
local THREAD_OFFSET = 0.381966

local next_thread = 0

-- Runs in the setup state, once per thread, before that thread's init(): numbers the
-- threads, since a thread's own state cannot tell which one it is.
function setup(thread)
   thread:set("thread_number", next_thread)
   next_thread = next_thread + 1
end

local requests = {}
local position = 0

function init(args)
   -- wrk's own request, ending in the blank line; the header goes in front of that line.
   -- (Not wrk.format with a headers table: it walks the table with pairs(), whose order
   -- changes from run to run.)
   local plain = wrk.format()
   assert(plain:sub(-4) == "\r\n\r\n", "distinct_requests.lua: requests with a body are not supported")
   local head = plain:sub(1, -3)
   for i = 0, DISTINCT - 1 do
      requests[i + 1] = head .. string.format("X-Id: %05d\r\n\r\n", i)
   end
   local number = thread_number or 0
   position = math.floor(number * THREAD_OFFSET * DISTINCT) % DISTINCT
end

function request()
   position = position % DISTINCT + 1
   return requests[position]
end
