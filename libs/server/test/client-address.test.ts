import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig, ConfigError } from "@bulwark/core";
import { addressBucket, ClientAddressResolver, normalizeAddress, RateLimiter } from "../src/index.js";

const h = (init: Record<string, string>) => new Headers(init);

test("an IPv4-mapped IPv6 peer is given as IPv4", () => {
  assert.equal(normalizeAddress("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(normalizeAddress("2001:db8::1"), "2001:db8::1");
  assert.equal(normalizeAddress(undefined), undefined);
});

test("without trusted proxies every forwarding header is ignored", () => {
  const r = new ClientAddressResolver([]);
  assert.equal(r.resolve("::ffff:192.0.2.1", h({ "x-forwarded-for": "10.0.0.1", "x-real-ip": "10.0.0.2", forwarded: "for=10.0.0.3" })), "192.0.2.1");
});

test("forwarding headers from a peer outside the trusted proxies are ignored", () => {
  const r = new ClientAddressResolver(["10.0.0.0/8"]);
  assert.equal(r.resolve("192.0.2.1", h({ "x-forwarded-for": "198.51.100.1" })), "192.0.2.1");
});

test("behind trusted proxies the client is the right-most address that is not a proxy", () => {
  const r = new ClientAddressResolver(["10.0.0.0/8", "fd00::/8"]);
  assert.equal(r.resolve("10.0.0.5", h({ "x-forwarded-for": "203.0.113.9, 198.51.100.7, 10.1.2.3" })), "198.51.100.7");
  assert.equal(r.resolve("::ffff:10.0.0.5", h({ "x-forwarded-for": "198.51.100.7:4711" })), "198.51.100.7");
  assert.equal(r.resolve("fd00::1", h({ "x-forwarded-for": "[2001:db8::5]:80" })), "2001:db8::5");
  // Every hop a proxy: the left-most one is the best that is known.
  assert.equal(r.resolve("10.0.0.5", h({ "x-forwarded-for": "10.9.9.9, 10.1.1.1" })), "10.9.9.9");
  // Garbage ends the walk at the last trusted hop, never at a chosen value.
  assert.equal(r.resolve("10.0.0.5", h({ "x-forwarded-for": "198.51.100.7, not-an-ip, 10.1.1.1" })), "10.1.1.1");
});

test("Forwarded (RFC 7239) and X-Real-IP count when X-Forwarded-For is absent", () => {
  const r = new ClientAddressResolver(["10.0.0.0/8"]);
  assert.equal(r.resolve("10.0.0.5", h({ forwarded: 'for=192.0.2.60;proto=http;by=10.0.0.5, for="[2001:db8:cafe::17]:4711"' })), "2001:db8:cafe::17");
  assert.equal(r.resolve("10.0.0.5", h({ forwarded: "for=unknown" })), "10.0.0.5");
  assert.equal(r.resolve("10.0.0.5", h({ "x-real-ip": "192.0.2.60" })), "192.0.2.60");
  assert.equal(r.resolve("10.0.0.5", h({})), "10.0.0.5");
});

test("TRUSTED_PROXIES must be CIDR blocks, and the error names the variable", () => {
  assert.deepEqual(loadConfig("tenancy", { TRUSTED_PROXIES: " 10.0.0.0/8, ::1/128 " }).TRUSTED_PROXIES, ["10.0.0.0/8", "::1/128"]);
  assert.deepEqual(loadConfig("tenancy", {}).TRUSTED_PROXIES, []);
  assert.throws(() => loadConfig("tenancy", { TRUSTED_PROXIES: "10.0.0.0/8,10.0.0.1" }), (e: unknown) => e instanceof ConfigError && /TRUSTED_PROXIES/.test(e.message));
});

test("a token bucket refuses past its rate, says when to retry, and refills", () => {
  let now = 0;
  const limiter = new RateLimiter({ perMinute: 60, now: () => now });
  for (let i = 0; i < 60; i++) assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.take("a"), 1000);
  assert.equal(limiter.take("b"), 0, "another key has its own bucket");
  now += 1000;
  assert.equal(limiter.take("a"), 0);
  assert.ok(limiter.take("a") > 0);
});

test("the limiter's memory is bounded whatever addresses callers use", () => {
  const limiter = new RateLimiter({ perMinute: 5, maxKeys: 100 });
  for (let i = 0; i < 10_000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`);
  assert.ok(limiter.size <= 100, `${limiter.size} keys`);
});

test("IPv6 clients are counted per /64, IPv4 clients per address", () => {
  assert.equal(addressBucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(addressBucket("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(addressBucket("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressBucket("::1"), "0:0:0:0::/64");
  assert.equal(addressBucket("192.0.2.1"), "192.0.2.1");
  assert.equal(addressBucket(undefined), "unknown");
});
