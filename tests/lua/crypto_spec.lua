-- salvage.crypto: digests, HMAC, Base64, Java URL encoding, randomness.
local crypto = require "salvage.crypto"

describe("salvage.crypto", function()
  it("hashes strings (FIPS 180-2, RFC 1321 vectors)", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", crypto.sha256("abc"))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", crypto.sha256(""))
    assert.equal("d41d8cd98f00b204e9800998ecf8427e", crypto.md5(""))
    assert.equal("900150983cd24fb0d6963f7d28e17f72", crypto.md5("abc"))
    assert.equal(32, #crypto.sha256("abc", "raw"))
    assert.has_error(function() crypto.sha256("abc", "base32") end)
  end)

  it("computes HMAC-SHA1 (RFC 2202 vectors)", function()
    assert.equal("b617318655057264e28bc0b6fb378c8ef146be00",
      crypto.hmac_sha1(string.rep("\x0b", 20), "Hi There"))
    assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", crypto.hmac_sha1("Jefe", "what do ya want for nothing?"))
    assert.equal("3nybhbi3iqa8ino29wqQcBydtNk=",
      crypto.base64(crypto.hmac_sha1("key", "The quick brown fox jumps over the lazy dog", "raw")))
  end)

  it("encodes Base64 (RFC 4648 vectors) and decodes it back", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
      foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.equal(enc, crypto.base64(plain))
      assert.equal(plain, crypto.base64_decode(enc))
    end
    local bin = crypto.random_bytes(1000)
    assert.equal(bin, crypto.base64_decode(crypto.base64(bin)))
    local r, msg, code = crypto.base64_decode("Zm9v!")
    assert.is_nil(r)
    assert.matches("invalid", msg)
    assert.equal("EINVAL", code)
  end)

  it("URL-encodes the way java.net.URLEncoder + CloudStack do", function()
    assert.equal("azAZ09.-*_", crypto.urlencode("azAZ09.-*_"))
    assert.equal("%7E", crypto.urlencode("~"))
    assert.equal("%20", crypto.urlencode(" "))
    assert.equal("%2B%2F%3D%26%3F%25", crypto.urlencode("+/=&?%"))
    assert.equal("%C3%A9%E2%82%AC", crypto.urlencode("é€"))
    assert.equal("%00%FF", crypto.urlencode("\0\255"))
  end)

  it("digests files by streaming, equal to the string digest", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    local data = string.rep("salvage\n", 300000) .. crypto.random_bytes(12345)
    f:write(data)
    f:close()
    assert.equal(crypto.sha256(data), crypto.sha256_file(path))
    assert.equal(crypto.md5(data), crypto.md5_file(path))
    os.remove(path)
    local r, msg, code = crypto.sha256_file(path)
    assert.is_nil(r)
    assert.matches("No such file", msg)
    assert.equal("ENOENT", code)
  end)

  it("gives random bytes of the asked length, different each time", function()
    assert.equal(0, #crypto.random_bytes(0))
    local a, b = crypto.random_bytes(32), crypto.random_bytes(32)
    assert.equal(32, #a)
    assert.not_equal(a, b)
    assert.has_error(function() crypto.random_bytes(-1) end)
  end)

  it("hex-encodes", function()
    assert.equal("00ff10", crypto.hex("\0\255\16"))
  end)
end)
