-- locks/tickets: buyers read a JSON "database", wait for the network, and
-- write back. Without the lock (-p lock=false) more tickets are sold than
-- exist; with it (the default) exactly `tickets` are sold.
local concur = require "concur"
local cjson = require "cjson"
io.stdout:setvbuf("line")

local use_lock = concur.params.lock ~= false
local tickets = concur.params.tickets or 1
local buyers = concur.params.buyers or 10

local db = os.tmpname()
local function load()
  local f = assert(io.open(db))
  local t = cjson.decode(f:read("a"))
  f:close()
  return t
end
local function save(t)
  local f = assert(io.open(db, "w"))
  f:write(cjson.encode(t))
  f:close()
end
save{count = tickets}

local lock = concur.Lock()
local sold = concur.Semaphore(0) -- counts the sales, whoever makes them
-- The sale opens once every buyer is there, as at a box office: buyers
-- that arrive late (a slow fork on a busy machine) would otherwise find
-- the first sales saved already, and the race would sometimes not show.
local open = concur.Event()

local function search(i)
  print(("buyer %d sees %d left"):format(i, load().count))
end

local function buy(i)
  local t = load()
  concur.sleep(math.random() * 3) -- the network is slow
  if t.count > 0 then
    t.count = t.count - 1
    save(t)
    sold:release()
    print(("buyer %d bought one"):format(i))
  else
    print(("buyer %d found none"):format(i))
  end
end

local function buyer(i)
  open:wait()
  search(i)
  if use_lock then lock:with(buy, i) else buy(i) end
end

local ps = {}
for i = 1, buyers do
  ps[i] = concur.Process{target = buyer, args = {i}}
  ps[i]:start()
end
open:set()
for _, p in ipairs(ps) do p:join() end
local final = load().count
os.remove(db)
print(("sold %d of %d tickets (lock=%s); %d left in the file"):format(
  sold:get_value(), tickets, tostring(use_lock), final))
concur.report{sold = sold:get_value(), final = final, tickets = tickets}
