-- PrivateBin 2.0.5 (bench/peers.py): its browser client's API, the header
-- X-Requested-With: JSONHttpRequest on every request.
-- Arguments after "--":
--   create SIZE   POST / with a v2 paste document: SIZE + 16 bytes of "ciphertext"
--                 (random, base64; a per-thread counter in its first 16 characters)
--   json FILE     GET a random path of FILE (/?<id>, one a line): the JSON document
--   page FILE     the same without the header: the HTML page a browser loads first
-- PrivateBin answers its API errors with HTTP 200 and {"status":1,...}: an answer
-- without "status":0 (json, create) or not 200 counts as a status error.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local mode, head, tail, filler
local paths, requests = {}, {}
local counter = 0
bad = 0  -- a global: done() reads each thread's with thread:get

local function random_text(n, chars)
  local t = {}
  for i = 1, n do
    local k = math.random(#chars)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end

function init(args)
  mode = args[1] or "create"
  math.randomseed(os.time() * 100 + (tid or 0))
  wrk.headers["X-Requested-With"] = "JSONHttpRequest"
  if mode == "create" then
    local size = tonumber(args[2] or "1024") + 16
    local n = math.ceil(size / 3) * 4
    filler = random_text(n - 16, b64)
    -- as js/privatebin.js sends it: [iv, salt, iterations, key size, tag size,
    -- algorithm, mode, compression], the formatter, open discussion, burn
    head = '{"v":2,"adata":[["' .. random_text(22, b64) .. '==","' ..
      random_text(11, b64) .. '=",100000,256,128,"aes","gcm","zlib"],"plaintext",0,0],' ..
      '"meta":{"expire":"1week"},"ct":"'
    tail = '"}'
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  elseif mode == "json" or mode == "page" then
    if mode == "page" then wrk.headers["X-Requested-With"] = nil end
    for line in io.lines(args[2]) do
      if #line > 0 then paths[#paths + 1] = line end
    end
    if #paths == 0 then error("no paths in " .. args[2]) end
    for i, p in ipairs(paths) do
      requests[i] = wrk.format("GET", p)
    end
  else
    error("unknown mode " .. mode)
  end
end

function request()
  if mode == "create" then
    counter = counter + 1
    return wrk.format("POST", "/", nil,
      head .. string.format("%04x%012x", tid or 0, counter) .. filler .. tail)
  end
  return requests[math.random(#paths)]
end

function response(status, headers, body)
  if status ~= 200 or (mode ~= "page" and not body:find('"status":0', 1, true)) then
    bad = bad + 1
  end
end

function done(summary, latency, reqs)
  for _, thread in ipairs(threads) do
    summary.errors.status = summary.errors.status + (thread:get("bad") or 0)
  end
  report.done(summary, latency, reqs)
end
