-- pools/callback: tasks "fetch" pages (sleeps of different lengths); the
-- callback runs in the parent for each as it completes, in completion order.
local concur = require "concur"
io.stdout:setvbuf("line")

local pages = {{"/a", 3}, {"/b", 1}, {"/c", 2}, {"/d", 0.5}}
local parent = concur.getpid()
local order, in_parent = {}, true

local function fetch(url, seconds)
  concur.sleep(seconds)
  return {url = url, size = #url * 100, worker = concur.getpid()}
end

local function on_page(page)
  in_parent = in_parent and concur.getpid() == parent
  order[#order + 1] = page.url
  print(("callback in pid %d: %s (%d bytes, fetched by %d)"):format(
    concur.getpid(), page.url, page.size, page.worker))
end

local pool = concur.Pool{processes = 4}
for _, p in ipairs(pages) do
  pool:apply_async(fetch, {p[1], p[2]}, {callback = on_page})
end
pool:close()
pool:join() -- the callbacks run while the parent waits here
print("completion order:", table.concat(order, " "))
concur.report{order = table.concat(order, ","), in_parent = in_parent}
