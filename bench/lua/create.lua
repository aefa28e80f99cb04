-- Creates: a multipart POST / per request, each body unique (a per-thread
-- counter in the first 16 characters, so Git never deduplicates two pastes).
-- Arguments after "--": KIND SIZE, KIND one of
--   plain     Pasteur, field paste (SIZE bytes of text)
--   file      Pasteur, the same as a file part (`curl -F paste=@notes.txt`)
--   enc       Pasteur, fields paste (base64url of SIZE+16 bytes), iv, encrypted=true
--   pinnwand  pinnwand's /curl endpoint, fields raw (SIZE bytes), lexer, expiry
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local boundary = "benchb0undaryQ7x3KfZ"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local kind, size, path, filler, head, tail
local counter = 0

local function field(name, value)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name ..
    "\"\r\n\r\n" .. value .. "\r\n"
end

local function random_text(n, chars)
  local t = {}
  for i = 1, n do
    local k = math.random(#chars)
    t[i] = chars:sub(k, k)
  end
  return table.concat(t)
end

function init(args)
  kind = args[1] or "plain"
  size = tonumber(args[2] or "1024")
  math.randomseed(os.time() * 100 + (tid or 0))
  path = "/"
  if kind == "plain" then
    filler = random_text(size - 16, "abcdefghijklmnopqrstuvwxyz     \n")
    head = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"paste\"\r\n\r\n"
    tail = "\r\n--" .. boundary .. "--\r\n"
  elseif kind == "file" then
    filler = random_text(size - 16, "abcdefghijklmnopqrstuvwxyz     \n")
    head = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"paste\"; " ..
      "filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    tail = "\r\n--" .. boundary .. "--\r\n"
  elseif kind == "enc" then
    -- base64url of SIZE bytes of plaintext + the 16-byte GCM tag, unpadded
    local n = math.floor(((size + 16) * 4 + 2) / 3)
    filler = random_text(n - 16, alphabet)
    head = field("encrypted", "true") .. field("iv", random_text(16, alphabet)) ..
      "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"paste\"\r\n\r\n"
    tail = "\r\n--" .. boundary .. "--\r\n"
  elseif kind == "pinnwand" then
    path = "/curl"
    filler = random_text(size - 16, "abcdefghijklmnopqrstuvwxyz     \n")
    head = field("lexer", "text") .. field("expiry", "1day") ..
      "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"raw\"\r\n\r\n"
    tail = "\r\n--" .. boundary .. "--\r\n"
  else
    error("unknown kind " .. kind)
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

function request()
  counter = counter + 1
  local body = head .. string.format("%04x%012x", tid or 0, counter) .. filler .. tail
  return wrk.format("POST", path, nil, body)
end

done = report.done
