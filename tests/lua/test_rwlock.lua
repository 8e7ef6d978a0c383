-- test_rwlock: RWLock (core/rwlock.c) between processes, threads and threads of processes
local concur = require "concur"
local T = dofile("tests/lua/harness.lua")
local bin = os.getenv("CONCUR") or "./build/concur"

T.matrix("RWLock: readers and writers in 5 parties, counts exact, no one beside a writer", function(spawn)
  for _, prefer in ipairs{false, true} do
    local rw = concur.RWLock{prefer_writers = prefer}
    local n, writing, broken = concur.RawValue('q', 0), concur.RawValue('i', 0), concur.Value('i', 0)
    local function work(rounds)
      for k = 1, rounds do
        if k % 4 == 0 then
          local _ <close> = rw:write_hold()
          if writing.value ~= 0 then broken.value = broken.value + 1 end
          writing.value = 1
          n.value = n.value + 1 -- a read and then a write: only the write lock makes it exact
          writing.value = 0
        else
          rw:read_with(function()
            if writing.value ~= 0 then broken.value = broken.value + 1 end
          end)
        end
      end
    end
    T.alongside(spawn, 4, work, 800)
    T.eq(n.value, 5 * 200, "writes")
    T.eq(broken.value, 0, "reads or writes beside a writer")
    T.eq(rw:readers(), 0)
    T.eq(rw:writing(), false)
  end
end)

T.matrix("RWLock: a reader shares it, a writer waits for the reader, then has it alone", function(spawn)
  local rw = concur.RWLock{name = "db"}
  local said = concur.Queue()
  T.eq(rw:acquire_read(), true)
  T.eq(rw:mine(), "read")
  spawn(function()
    said:put(rw:acquire_read(false) and rw:readers())
    rw:release()
    said:put(rw:acquire_write(false))
  end):join()
  T.eq(said:get(true, 10), 2, "two readers at once")
  T.eq(said:get(true, 10), false, "no writer beside a reader")
  local writer = spawn(function()
    local _ <close> = rw:write_hold()
    said:put(rw:mine())
    said:put(tostring(rw))
  end)
  while rw:waiting_writers() == 0 do concur.sleep(0.001) end
  T.eq(said:empty(), true, "the writer waits")
  rw:release()
  T.eq(said:get(true, 10), "write")
  assert(said:get(true, 10):find("^RWLock%(db, written by pid %d+%)$"))
  writer:join()
  T.eq(tostring(rw), "RWLock(db, free)")
  T.eq(rw:mine(), nil)
end)

T.matrix("RWLock: with writer preference a reader waits behind a waiting writer", function(spawn)
  local rw = concur.RWLock{prefer_writers = true}
  local order = concur.Queue()
  rw:acquire_read()
  local w = spawn(function() rw:write_with(function() order:put("writer") end) end)
  while rw:waiting_writers() == 0 do concur.sleep(0.001) end
  local r = spawn(function()
    order:put(rw:acquire_read(false) and "read at once" or "waited")
    rw:read_with(function() order:put("reader") end)
  end)
  T.eq(order:get(true, 10), "waited")
  rw:release()
  w:join(); r:join()
  T.eq(order:get(true, 10), "writer")
  T.eq(order:get(true, 10), "reader")
end)

T.test("RWLock: timeouts, refusals and bad arguments", function()
  local rw = concur.RWLock{name = "db"}
  rw:acquire_write()
  local e = T.raises("Deadlock", rw.acquire_read, rw)
  T.eq(tostring(e), "concur.Deadlock: RWLock 'db' is held by the calling thread already (to " ..
       "write): it would wait for itself; release it first")
  T.raises("Deadlock", rw.write_hold, rw)
  T.raises("Deadlock", rw.read_with, rw, print)
  local p = concur.Process{target = function()
    local t0 = concur.time()
    local got = rw:acquire_read(true, 0.2)
    local dt = concur.time() - t0
    os.exit((got == false and dt >= 0.2 and dt < 1) and 0 or 1)
  end}
  p:start(); p:join()
  T.eq(p.exitcode, 0, "a timed read of a written RWLock is false after its timeout")
  rw:release()
  e = T.raises("ValueError", rw.release, rw)
  T.eq(tostring(e), "concur.ValueError: release of RWLock 'db', which the calling thread does not hold")
  T.refuses("prefer_writers must be true or false", concur.RWLock, {prefer_writers = 1})
  T.refuses("unknown option 'prefer_writer' %(did you mean 'prefer_writers'%?%)", concur.RWLock,
            {prefer_writer = true})
  T.refuses("block must be", rw.acquire_write, rw, 5)
  T.eq(tostring(concur.RWLock()):match("^RWLock%((RWLock%-%d+), free%)$") ~= nil, true)
end)

T.test("RWLock: a holder that died is taken over, with a warning", function()
  local code, out, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local rw = concur.RWLock{name = "db"}
    local p = concur.Process{name = "Reader", target = function() rw:acquire_read() end}
    p:start(); p:join()
    print(rw:acquire_write(true, 5))
    rw:release()
    print(rw:acquire_write(true, 5))
    rw:release()
    local t = concur.Thread{name = "Writer", target = function() rw:acquire_write() end}
    t:start(); t:join()
    print(rw:acquire_read(true, 5))
  ]]) .. " --timeout 30")
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "true\towner_died\ntrue\ntrue\towner_died\n")
  assert(err:find("concur: warning: OwnerDied: RWLock 'db': its holder Reader %(pid %d+%) died " ..
                  "holding it; MainProcess %(pid %d+%) has it now\n"), err)
  assert(err:find("concur: warning: OwnerDied: RWLock 'db': its holder, a thread of MainProcess " ..
                  "%(pid %d+%) ended holding it; MainProcess %(pid %d+%) has it now\n"), err)
end)

T.test("RWLock: a holder is not taken for dead when descriptors run out", function()
  local code, out, err = T.sh("ulimit -n 64; " .. bin .. " run " .. T.script([[
    local concur = require "concur"
    local rw = concur.RWLock()
    local go, done = concur.Event(), concur.Event()
    local t = concur.Thread{target = function()
      rw:acquire_write(); go:set(); done:wait(10); rw:release()
    end}
    t:start(); go:wait()
    local files = {}
    while true do
      local f = io.open("/dev/null")
      if not f then break end
      files[#files + 1] = f
    end
    print(rw:acquire_write(true, 0.3))
    for _, f in ipairs(files) do f:close() end
    done:set(); t:join()
  ]]) .. " --timeout 30")
  T.eq(code, 0, "exit status\n" .. err)
  T.eq(out, "false\n", "the live writer kept it")
end)

T.test("RWLock: passed through a Queue to a running process, it works there", function()
  local q, back = concur.Queue(), concur.Queue()
  local p = concur.Process{target = function()
    local rw = q:get(true, 10)
    back:put(rw:acquire_read(false) and rw:readers())
    rw:release()
    back:put(rw:acquire_write(true, 10))
    back:put(tostring(rw))
    rw:release()
  end}
  p:start()
  local rw = concur.RWLock{name = "sent"}
  rw:acquire_read()
  q:put(rw)
  T.eq(back:get(true, 10), 2, "the receiver reads beside this reader")
  concur.sleep(0.05)
  T.eq(back:empty(), true, "its writer waits for this reader")
  rw:release()
  T.eq(back:get(true, 10), true)
  assert(back:get(true, 10):find("^RWLock%(sent, written by pid %d+%)$"))
  p:join()
  T.eq(p.exitcode, 0)
  T.eq(rw:acquire_write(false), true)
  rw:release()
end)

T.test("RWLock: a deadlock through it is explained, with what each holds", function()
  local code, _, err = T.sh(bin .. " run " .. T.script([[
    local concur = require "concur"
    local rw, lock = concur.RWLock{name = "db"}, concur.Lock{name = "log"}
    local held = concur.Event()
    rw:acquire_write()
    local p = concur.Process{name = "Reader", target = function()
      lock:acquire()
      held:set()
      rw:acquire_read()
    end}
    p:start()
    held:wait()
    lock:acquire()
  ]]) .. " --timeout 30")
  T.eq(code, 3, "exit status\n" .. err)
  assert(err:find("concur: deadlock: 2 threads wait for each other's locks, forever:\n", 1, true), err)
  assert(err:find("MainThread of MainProcess %(pid %d+%) holds RWLock 'db' and waits to acquire " ..
                  "Lock 'log' at [^\n]+:12\n"), err)
  assert(err:find("MainThread of Reader %(pid %d+%) holds Lock 'log' and waits to acquire " ..
                  "RWLock 'db' at [^\n]+:8\n"), err)
end)

T.test("RWLock: its holds and waits are traced", function()
  local code, err, ev = T.traced([[
    local concur = require "concur"
    local rw = concur.RWLock{name = "db"}
    local inside = concur.Event()
    local t = concur.Thread{target = function()
      rw:read_with(function()
        inside:set()
        -- Until the writer waits: it must.
        while rw:waiting_writers() == 0 do concur.sleep(0.001) end
      end)
    end}
    t:start()
    inside:wait()
    rw:write_with(function() end)
    t:join()
  ]])
  T.eq(code, 0, "exit status\n" .. err)
  local holds, waits = 0, 0
  for _, e in ipairs(ev) do
    if e.ph == "X" and e.name == "holds RWLock 'db'" then holds = holds + 1 end
    if e.ph == "X" and e.name == "waits to acquire RWLock 'db'" then waits = waits + 1 end
  end
  T.eq(holds, 2, "holds")
  T.eq(waits, 1, "waits")
end)

T.done()
