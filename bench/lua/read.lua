-- Reads: GET a random path among those listed (one per line) in the file given
-- after "--"; an optional second argument is sent as the Accept header.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local paths = {}
local requests = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  if #paths == 0 then error("no paths in " .. args[1]) end
  if args[2] then wrk.headers["Accept"] = args[2] end
  math.randomseed(os.time() * 100 + (tid or 0))
  for i, p in ipairs(paths) do
    requests[i] = wrk.format("GET", p)
  end
end

function request()
  return requests[math.random(#paths)]
end

done = report.done
