-- locks/ticket_server: the ticket sale over TCP. A server on 127.0.0.1 forks
-- a process per connection; commands "check" and "buy"; buying takes a Lock.
-- Clients in other processes buy at once: never more sold than there were.
local concur = require "concur"
local socket = require "socket"
io.stdout:setvbuf("line")

local tickets = concur.params.tickets or 3
local nclients = concur.params.clients or 8
local left = concur.Value('i', tickets)
local lock = concur.Lock()
local sold = concur.Value('i', 0)

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()

local function handle(conn)
  while true do
    local cmd = conn:receive("*l")
    if not cmd then break end
    if cmd == "check" then
      conn:send(left.value .. "\n")
    elseif cmd == "buy" then
      local ok = lock:with(function()
        local n = left.value
        concur.sleep(0.1) -- the database is slow
        if n > 0 then
          left.value = n - 1
          sold.value = sold.value + 1
          return true
        end
        return false
      end)
      conn:send(ok and "ok\n" or "sold out\n")
    else
      conn:send("unknown command\n")
    end
  end
  conn:close()
end

local clients = {}
for i = 1, nclients do
  clients[i] = concur.Process{target = function()
    server:close()
    local c = assert(socket.connect("127.0.0.1", port))
    c:send("check\n")
    local seen = c:receive("*l")
    c:send("buy\n")
    print(("client %d saw %s left, bought: %s"):format(i, seen, c:receive("*l")))
    c:close()
  end}
  clients[i]:start()
end
local handlers = {}
for i = 1, nclients do
  local conn = assert(server:accept())
  handlers[i] = concur.Process{target = function() server:close() handle(conn) end}
  handlers[i]:start()
  conn:close()
end
server:close()
for _, p in ipairs(clients) do p:join() end
for _, p in ipairs(handlers) do p:join() end
print(("sold %d of %d; %d left"):format(sold.value, tickets, left.value))
concur.report{sold = sold.value, tickets = tickets, left = left.value}
