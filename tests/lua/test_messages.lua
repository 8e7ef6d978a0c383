-- test_messages: Queue, JoinableQueue, SimpleQueue, Pipe and the codec.
local concur = require "concur"
local P = require "concur.private" -- concur's own helpers, for tests of them
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

local script = T.script

T.test("Queue: order, bounds, nowait, timeouts, nil", function()
  local q = concur.Queue(2)
  q:put(1); q:put(nil)
  T.eq(q:qsize(), 2); T.eq(q:full(), true); T.eq(q:empty(), false)
  T.raises("Full", q.put_nowait, q, 3)
  T.raises("Full", q.put, q, 3, false)
  local t0 = concur.time()
  T.raises("Full", q.put, q, 3, true, 0.1)
  local dt = concur.time() - t0
  assert(dt >= 0.1 and dt < 0.15, "put timeout " .. dt)
  T.eq(q:get(), 1)
  T.eq(select("#", q:get()), 1, "nil is a value like any other")
  T.raises("Empty", q.get_nowait, q)
  t0 = concur.time()
  local err = T.raises("Empty", q.get, q, true, 0.1)
  dt = concur.time() - t0
  assert(dt >= 0.1 and dt < 0.15, "get timeout " .. dt)
  T.eq(tostring(err), "concur.Empty: queue is empty")
  local u = concur.Queue()
  for i = 1, 10000 do u:put(i) end
  T.eq(u:qsize(), 10000); T.eq(u:full(), false)
  for i = 1, 10000 do assert(u:get() == i) end
  u:close()
  local ok, e = pcall(u.put, u, 1)
  T.eq(ok, false); assert(tostring(e):find("attempt to use a closed Queue"), tostring(e))
end)

T.test("Queue: 10 MB strings, and no feeder-thread pitfalls", function()
  local q = concur.Queue()
  local big = ("0123456789"):rep(1024 * 1024)
  -- A child puts a big message and ends; joining it before the get does
  -- not deadlock (it does in CPython), and nothing is lost.
  local p = concur.Process{target = function() q:put(big) end}
  p:start()
  T.eq(p:join(10), true, "join before get returns")
  T.eq(p.exitcode, 0)
  T.eq(q:get() == big, true, "10 MB round trip")
  -- A child terminated after its put: the message is there.
  local done = concur.Event()
  local t = concur.Process{target = function() q:put("kept"); done:set(); concur.sleep(60) end}
  t:start()
  done:wait()
  t:terminate(); t:join()
  T.eq(q:get(false), "kept")
  -- 100 MB goes as far as the arena (256 MiB) holds it: in a block of its
  -- own, not in the ring (whose doubling stopped messages at 64 MiB).
  local used = concur.arena_stats().used
  local huge = big:rep(10)
  local h = concur.Process{target = function() q:put(huge); q:put("after") end}
  h:start()
  T.eq(q:get(true, 30) == huge, true, "100 MB round trip")
  T.eq(q:get(true, 10), "after", "in order")
  h:join()
  huge = nil
  collectgarbage()
  T.eq(concur.arena_stats().used, used, "its block went with it")
end)

T.test("JoinableQueue and SimpleQueue", function()
  local j = concur.JoinableQueue()
  j:put("a"); j:put("b")
  T.eq(j:join(0.05), false)
  local c = concur.Process{target = function()
    for _ = 1, 2 do j:get(); j:task_done() end
  end}
  c:start()
  T.eq(j:join(10), true)
  c:join()
  T.raises("ValueError", j.task_done, j)
  local s = concur.SimpleQueue()
  T.eq(s:empty(), true)
  s:put({x = 1})
  T.eq(s:get().x, 1)
  T.eq(s.qsize, nil, "SimpleQueue has no qsize")
end)

T.test("codec: values, cycles, functions, objects, Unsendable paths", function()
  local q = concur.Queue()
  local shared = {1}
  local t = {a = shared, b = shared, [1.5] = "f", [true] = false, int = 3, float = 3.0,
             big = math.maxinteger, neg = math.mininteger, s = "\0bin\255"}
  t.me = t
  q:put(t)
  local r = q:get()
  T.eq(r.a == r.b, true, "shared reference kept")
  T.eq(r.me == r, true, "cycle kept")
  T.eq(math.type(r.int), "integer"); T.eq(math.type(r.float), "float")
  T.eq(r.big, math.maxinteger); T.eq(r.neg, math.mininteger)
  T.eq(r[1.5], "f"); T.eq(r[true], false); T.eq(r.s, "\0bin\255")
  -- Lists and the rest: holes, a list built backwards (in Lua's hash part),
  -- keys past the list, a shared table inside; views as the lists they show.
  local back = {}
  for i = 300, 1, -1 do back[i] = i * 2 end
  local holes = {1, nil, 3, [5] = 5, [-1] = "neg", [0] = "zero", x = {1.5, shared, shared}}
  local list = {}
  for i = 1, 1000 do list[i] = i % 7 == 0 and ("s" .. i) or i end
  q:put({back, holes, P.view(list, 10, 20), P.view({1, nil, 3}, 1, 3),
         P.view(list, 5, 4), list})
  local got = q:get()
  for i = 1, 300 do T.eq(got[1][i], i * 2) end
  T.eq(got[2][1], 1); T.eq(got[2][2], nil); T.eq(got[2][3], 3); T.eq(got[2][5], 5)
  T.eq(got[2][-1], "neg"); T.eq(got[2][0], "zero"); T.eq(got[2].x[1], 1.5)
  T.eq(got[2].x[2] == got[2].x[3], true)
  T.eq(#got[3], 11); T.eq(got[3][1], 10); T.eq(got[3][5], "s14"); T.eq(got[3][11], 20)
  T.eq(got[4][1], 1); T.eq(got[4][2], nil); T.eq(got[4][3], 3)
  T.eq(next(got[5]), nil, "an empty view")
  T.eq(#got[6], 1000); T.eq(got[6][994], "s994"); T.eq(got[6][1000], 1000)
  q:put(0 / 0)
  local nan = q:get()
  T.eq(nan ~= nan, true, "NaN")
  -- Functions: bytecode, upvalues copied by value, _ENV rebound.
  local base = 10
  local function add(x) return x + base + GLOBAL_IN_RECEIVER end
  local rq = concur.Queue()
  local p = concur.Process{target = function()
    GLOBAL_IN_RECEIVER = 100
    local f = q:get()
    rq:put(f(1))
  end}
  p:start()
  base = 20 -- copied by value at put: the sender's later change is not seen
  q:put(add)
  T.eq(rq:get(), 1 + 20 + 100)
  p:join()
  local function fact(n) return n <= 1 and 1 or n * fact(n - 1) end
  q:put(fact); T.eq(q:get()(5), 120, "a recursive function")
  q:put(string.format); T.eq(q:get()("%d", 7), "7", "library functions by name")
  q:put(concur.sleep); T.eq(q:get(), concur.sleep)
  -- Objects by handle, of any type.
  local l, e, v = concur.Lock(), concur.Event(), concur.Value('i', 9)
  q:put({l, e, v, l})
  local o = q:get()
  T.eq(o[1] == l and o[4] == l and o[2] == e, true)
  T.eq(o[3].value, 9)
  -- What cannot be sent says where it is.
  local err = T.raises("Unsendable", q.put, q, {args = {1, {conn = io.stdout}}})
  T.eq(err.message, "item.args[2].conn: userdata FILE*")
  err = T.raises("Unsendable", q.put, q, {co = coroutine.create(print)})
  T.eq(err.message, "item.co: thread")
  local deep = {}
  for _ = 1, 300 do deep = {deep} end
  err = T.raises("Unsendable", q.put, q, deep)
  -- The limit, and a path cut short in its middle.
  T.eq(err.message, "item[1][1][1].<193 levels>[1][1][1][1]: nested too deeply (more than 200 levels)")
  local a, b = concur.Pipe()
  err = T.raises("Unsendable", q.put, q, {a})
  assert(err.message:find("through a Pipe, not through a Queue"), err.message)
  T.eq(q:qsize(), 0, "nothing half-sent")
end)

T.test("Pipe: duplex, simplex, EOF, poll, bytes, maxlength", function()
  local a, b = concur.Pipe()
  a:send({1, 2}); T.eq(b:recv()[2], 2)
  b:send("back"); T.eq(a:recv(), "back")
  T.eq(a:poll(), false, "nothing to receive")
  local t0 = concur.time()
  T.eq(a:poll(0.1), false)
  assert(concur.time() - t0 >= 0.1)
  b:send(nil); T.eq(a:poll(0), true); T.eq(a:recv(), nil)
  b:send_bytes("raw bytes"); T.eq(a:recv_bytes(), "raw bytes")
  b:send_bytes("twelve bytes")
  local ok, err = pcall(a.recv_bytes, a, 5)
  T.eq(ok, false); assert(tostring(err):find("longer than maxlength"), tostring(err))
  ok, err = pcall(a.recv, a)
  assert(tostring(err):find("closed Connection"), tostring(err))
  local r, w = concur.Pipe(false)
  T.raises("ValueError", r.send, r, 1)
  T.raises("ValueError", w.recv, w)
  assert(r:fileno() >= 0 and w:fileno() ~= r:fileno())
  -- EOF once every copy of the sending end is closed, in every process.
  local p = concur.Process{target = function() r:close(); w:send("from child") end}
  p:start(); p:join()
  w:close()
  T.eq(r:recv(), "from child")
  T.raises("EOF", r.recv, r)
  local big = ("x"):rep(10 * 1024 * 1024)
  local c, d = concur.Pipe()
  local q = concur.Process{target = function() d:send(big) end}
  q:start()
  T.eq(c:recv() == big, true, "10 MB through a pipe")
  q:join()
end)

T.test("Pipe: a Connection sent through another Pipe", function()
  local x, y = concur.Pipe()        -- parent <-> child, to hand over a Connection
  local talk_parent, talk_child = concur.Pipe()
  local p = concur.Process{target = function()
    local conn = y:recv()           -- arrives with its descriptor (SCM_RIGHTS)
    conn:send("hello through a passed connection")
    os.exit(conn:recv() == "ack" and 0 or 1)
  end}
  p:start()
  x:send(talk_child)
  T.eq(talk_parent:recv(), "hello through a passed connection")
  talk_parent:send("ack")
  p:join()
  T.eq(p.exitcode, 0)
end)

T.test("one-way Pipe: a pipe(2), big messages, EOF not SIGPIPE, no descriptors", function()
  local r, w = concur.Pipe(false)
  -- 10 MB fill the pipe many times over: partial writes, waits, in order.
  local big = ("y"):rep(10 * 1024 * 1024)
  local p = concur.Process{target = function() r:close(); w:send(big); w:send("after") end}
  p:start()
  T.eq(r:recv() == big, true, "10 MB through a one-way pipe")
  T.eq(r:recv(), "after")
  p:join()
  T.eq(p.exitcode, 0)
  -- Descriptors need a socket: a clear error says where to send them.
  local a, b = concur.Pipe()
  local ok, err = pcall(w.send, w, a)
  T.eq(ok, false)
  assert(tostring(err):find("two%-way Pipe"), tostring(err))
  -- Once every reader is closed, a write fails with EOF; the writer lives on.
  r:close()
  local q = concur.Process{target = function()
    local sent, why = pcall(w.send, w, "nobody reads")
    os.exit(not sent and concur.is(why, "EOF") and 0 or 1)
  end}
  q:start(); q:join()
  T.eq(q.exitcode, 0, "EOF raised, not killed by SIGPIPE")
  T.raises("EOF", w.send, w, "nobody reads")
  -- What a message that could not go referred to is not kept alive by it.
  -- (A first round grows this process's table of held objects, which stays.)
  local function round(send)
    for _ = 1, 200 do
      local l = concur.Lock()
      if send then T.raises("EOF", w.send, w, {l}) end
    end
    collectgarbage(); collectgarbage()
  end
  round(false)
  local used = concur.arena_stats().used
  round(true)
  T.eq(concur.arena_stats().used, used, "no arena object leaked by failed sends")
  w:close()
  -- A one-way end handed over through a two-way Pipe still works there.
  local r2, w2 = concur.Pipe(false)
  local h = concur.Process{target = function()
    local got = b:recv()
    got:send("through a passed one-way end")
  end}
  h:start()
  a:send(w2)
  w2:close()
  T.eq(r2:recv(), "through a passed one-way end")
  h:join()
  T.raises("EOF", r2.recv, r2)
end)

T.test("send_nowait: what waits is the sender's own; frames never sent drop their references", function()
  local chunk = ("z"):rep(64 * 1024)
  -- Fills a's socket and leaves frames waiting in a; returns how many.
  local function fill(a, extra)
    local n = 0
    repeat n = n + 1 until not a:send_nowait({n, chunk, extra and extra(n)})
    return n
  end
  local a, b = concur.Pipe()
  local sent = fill(a)
  local room = concur.Event()
  -- The reader checks each message arrives once, in order.
  local reader = concur.Process{target = function()
    a:close()
    local first = b:recv()
    room:set()
    local want = 2
    assert(first[1] == 1, "first message")
    while true do
      local ok, m = pcall(b.recv, b)
      if not ok then
        assert(concur.is(m, "EOF"), tostring(m))
        break
      end
      assert(m[1] == want and m[2] == chunk, ("message %s where %d was due"):format(m[1], want))
      want = want + 1
    end
    os.exit(want - 1 == sent and 0 or 1)
  end}
  -- A child inherits a copy of what waits: its flush and close send none of it.
  local child = concur.Process{target = function()
    room:wait(10)
    a:flush()
    a:close()
  end}
  child:start()
  reader:start()
  child:join(10)
  T.eq(child.exitcode, 0)
  while not a:flush() do concur.sleep(0.001) end
  a:close()
  b:close()
  reader:join(10)
  T.eq(reader.exitcode, 0, "every message once, in order")
  -- Frames still waiting when the sender closes are dropped, and so are
  -- the references they carry; those in the socket live until read.
  local function round()
    local c, d = concur.Pipe()
    local n = fill(c, function() return concur.Lock() end)
    c:close()
    local got = 0
    while pcall(d.recv, d) do got = got + 1 end
    d:close()
    collectgarbage(); collectgarbage()
    return n, got
  end
  round()
  local used = concur.arena_stats().used
  local n, got = round()
  T.eq(got < n, true, "some frames were still waiting at close")
  T.eq(concur.arena_stats().used, used, "no arena object leaked by dropped frames")
end)

-- The messages of the cases below: numbered, of sizes that vary.
local function item(i, size)
  return {i = i, s = ("x"):rep(size(i))}
end
local function small(i) return (i * 37) % 2000 end
local function pipe_size(i) return 1536 + (i * 7919) % (100 * 1024 - 1536) end

-- A case that goes wrong fails, and does not hang: every wait on the other
-- party is bounded.
local WAIT = 60
local function get(q) return q:get(true, WAIT) end
local function recv(c)
  if not c:poll(WAIT) then error("nothing came within " .. WAIT .. " s", 2) end
  return c:recv()
end

-- Takes n items from recv(), checking each arrives once, in order, whole.
local function take(recv, n, size, what)
  local got = {}
  for k = 1, n do
    local m = recv()
    if type(m) ~= "table" or #m.s ~= size(m.i) then
      error(("%s: message %d is torn: %s"):format(what, k, tostring(m)))
    end
    got[k] = m.i
  end
  T.sequence(got, n, what)
end

-- N numbered items each way at once: one party sends to this one while
-- another receives from it, and this one does both, item for item. Every
-- item arrives once, in order, whole. Senders block when the other side is
-- full. send_in/recv_in carry items to this party, send_out/recv_out from it.
local function each_way(spawn, N, size, send_in, recv_in, send_out, recv_out)
  local producer = spawn(function()
    for i = 1, N do send_in(item(i, size)) end
  end)
  local consumer = spawn(function()
    take(recv_out, N, size, "the other party's receives")
  end)
  local got = {}
  for i = 1, N do
    send_out(item(i, size))
    local m = recv_in()
    assert(#m.s == size(m.i), "torn")
    got[i] = m.i
  end
  producer:join(); consumer:join()
  T.sequence(got, N, "this party's receives")
end

for _, maxsize in ipairs({1, 2, 0}) do
  T.matrix(("Queue(%d): 400 items each way at once, blocking senders, each once in order")
           :format(maxsize), function(spawn)
    local to_main, from_main = concur.Queue(maxsize), concur.Queue(maxsize)
    each_way(spawn, 400, small,
             function(m) to_main:put(m) end, function() return get(to_main) end,
             function(m) from_main:put(m) end, function() return get(from_main) end)
    T.eq(to_main:qsize() + from_main:qsize(), 0, "nothing left")
  end)
end

T.matrix("JoinableQueue(2) and SimpleQueue between parties", function(spawn)
  local j, s, done = concur.JoinableQueue(2), concur.SimpleQueue(), concur.Queue()
  local worker = spawn(function()
    for _ = 1, 300 do
      local m = get(j)
      s:put(m)
      j:task_done()
    end
  end)
  for i = 1, 300 do j:put(i) end
  T.eq(j:join(30), true, "every item done")
  local got = {}
  for i = 1, 300 do got[i] = s:get() end
  T.sequence(got, 300, "SimpleQueue")
  worker:join()
  T.eq(s:empty(), true)
  done:close()
end)

T.matrix("messages over 64 KiB (in blocks of their own) between parties, in order", function(spawn)
  local q, back = concur.Queue(2), concur.Queue()
  local function big(i) return string.rep(string.char(64 + i), 70000 + i * 1000) end
  collectgarbage(); collectgarbage() -- what earlier cases dropped
  local used = concur.arena_stats().used
  local p = spawn(function()
    for i = 1, 20 do q:put({i, big(i)}) end
  end)
  for i = 1, 20 do
    local m = q:get(true, 30)
    T.eq(m[1], i)
    T.eq(m[2] == big(i), true, "item " .. i .. " whole")
  end
  p:join()
  collectgarbage(); collectgarbage()
  T.eq(concur.arena_stats().used, used, "each block went with its message")
  back:close()
end)

T.matrix("error objects travel as themselves; other tables with a metatable are refused", function(spawn)
  local q, back = concur.Queue(), concur.Queue()
  local r, w = concur.Pipe()
  local p = spawn(function()
    local ok, err = pcall(q.get, q, true, 0.01)
    back:put({ok, err})
    w:send(err)
    local e = q:get()
    back:put({concur.is(e, "Timeout"), tostring(e), e.traceback ~= nil})
  end)
  local m = back:get(true, 10)
  T.eq(m[1], false)
  T.eq(concur.is(m[2], "Empty"), true, "its kind, through a Queue")
  T.eq(tostring(m[2]), "concur.Empty: queue is empty")
  local e = r:recv()
  T.eq(concur.is(e, "Empty"), true, "and through a Pipe")
  local _, mine = pcall(concur.error, "Timeout", "timed out")
  q:put(mine)
  local m2 = back:get(true, 10)
  T.eq(m2[1], true); T.eq(m2[2], "concur.Timeout: timed out"); T.eq(m2[3], true)
  p:join()
  -- A class that does not travel: refused, with where it is, by every way
  -- of sending, before anything went.
  local obj = setmetatable({x = 1}, {__index = {y = 2}})
  local err = T.raises("Unsendable", q.put, q, {a = {b = obj}})
  T.eq(err.message, "item.a.b: a table with a metatable (its class does not travel: send a plain " ..
       "table, or give the metatable __concur_encode)")
  T.raises("Unsendable", w.send, w, obj)
  T.eq(q:empty(), true)
  r:close(); w:close()
end)

T.matrix("objects through a Queue(1): Events and Locks go and come back, each once", function(spawn)
  local out, back = concur.Queue(1), concur.Queue(1)
  local N = 200
  local other = spawn(function()
    for i = 1, N do
      local m = get(out)
      assert(m.i == i, "object message out of order")
      m.event:set()
      assert(m.lock:acquire(false) == false, "the sender holds the lock")
      back:put(m)
    end
  end)
  local used = concur.arena_stats().used
  for i = 1, N do
    local e, l = concur.Event(), concur.Lock()
    l:acquire()
    out:put({i = i, event = e, lock = l})
    local m = get(back)
    T.eq(m.i, i)
    T.eq(m.event == e and m.event:is_set(), true, "the same Event, set by the other party")
    T.eq(m.lock == l and l:locked(), true, "the same Lock, still held")
    l:release()
  end
  other:join()
  collectgarbage(); collectgarbage()
  assert(concur.arena_stats().used <= used + 4096, "objects that went and came back are freed")
end)

for _, duplex in ipairs({true, false}) do
  T.matrix(("%s Pipe: 300 messages of 1.5-100 KB each way at once, each once in order")
           :format(duplex and "duplex" or "one-way"), function(spawn)
    local in_r, in_w = concur.Pipe(duplex)    -- to main
    local out_r, out_w = concur.Pipe(duplex)  -- from main
    each_way(spawn, 300, pipe_size,
             function(m) in_w:send(m) end, function() return recv(in_r) end,
             function(m) out_w:send(m) end, function() return recv(out_r) end)
  end)
end

T.matrix("one duplex end, sending and receiving at once from two parties", function(spawn)
  local a, b = concur.Pipe()
  local N = 200
  -- The other end echoes; on this end one party sends while another receives.
  local echo = spawn(function()
    for _ = 1, N do b:send(recv(b)) end
  end)
  local sender = spawn(function()
    for i = 1, N do a:send(item(i, pipe_size)) end
  end)
  take(function() return recv(a) end, N, pipe_size, "echoes")
  sender:join(); echo:join()
end)

T.test("a full arena raises ArenaFull and the queue stays usable", function()
  local cfg = T.file("arena:\n  size: 8M\n")
  local path = script([[
    local concur = require "concur"
    local q = concur.Queue()
    local chunk = ("x"):rep(100000)
    local ok, err = pcall(function() for i = 1, 1000 do q:put(chunk) end end)
    print(concur.is(err, "ArenaFull"), q:qsize() > 0)
    while not q:empty() do q:get() end
    q:put("still works")
    print(q:get())]])
  local code, out = T.sh(bin .. " run " .. path .. " --config " .. cfg)
  T.eq(code, 0)
  T.eq(out, "true\ttrue\nstill works\n")
  os.remove(cfg); os.remove(path)
end)

T.test("an unbounded Queue of small items grows until the arena is full, beside another", function()
  -- A ring that doubled stopped at a quarter of the arena (about 4 MB of
  -- 1 KB items in 16 MiB); segments go until it is full, but for the holes
  -- between power-of-two blocks (84% of the room here).
  local cfg = T.file("arena:\n  size: 16M\n")
  local path = script([[
    local concur = require "concur"
    local other, q = concur.Queue(), concur.Queue()
    for i = 1, 1000 do other:put(i) end
    local room = concur.arena_stats().size - concur.arena_stats().used
    local item = ("x"):rep(1000)
    local n = 0
    local ok, err = pcall(function() while true do q:put(item); n = n + 1 end end)
    print(concur.is(err, "ArenaFull"), tostring(err):find("arena.size", 1, true) ~= nil)
    print(n * 1000 > 0.8 * room, n == q:qsize())
    for i = 1, n do assert(q:get() == item) end
    for i = 1, 1000 do assert(other:get() == i) end
    print(q:empty(), other:empty())]])
  local code, out = T.sh(bin .. " run " .. path .. " --config " .. cfg)
  T.eq(code, 0)
  T.eq(out, "true\ttrue\ntrue\ttrue\ntrue\ttrue\n")
  os.remove(cfg); os.remove(path)
end)

T.done()
