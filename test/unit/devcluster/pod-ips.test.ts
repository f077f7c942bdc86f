import { PodIPAllocator } from "../../../src/devcluster/node-agent/pod-ips.js";

test("each pod gets a distinct loopback address, stable for the pod", () => {
  const ips = new PodIPAllocator();
  const a = ips.allocate("a");
  const b = ips.allocate("b");
  expect(a).toBe("127.1.0.1");
  expect(b).toBe("127.1.0.2");
  expect(ips.allocate("a")).toBe(a);
});

test("a released address is not handed out again at once", () => {
  const ips = new PodIPAllocator();
  ips.allocate("a");
  ips.release("a");
  expect(ips.allocate("b")).toBe("127.1.0.2");
});

test("addresses past 255 carry into the third octet, and the pool wraps to freed ones", () => {
  const ips = new PodIPAllocator();
  for (let i = 1; i < 256; i++) ips.allocate(`p${i}`);
  expect(ips.allocate("next")).toBe("127.1.1.0");
  const all = new Set<string>();
  const full = new PodIPAllocator();
  for (let i = 0; i < 65534; i++) all.add(full.allocate(`q${i}`));
  expect(all.size).toBe(65534);
  expect(() => full.allocate("one-too-many")).toThrow("no free pod IP");
  full.release("q41");
  expect(full.allocate("reuse")).toBe("127.1.0.42");
});

test("addresses come from the cluster's own block", () => {
  expect(new PodIPAllocator(42).allocate("a")).toBe("127.42.0.1");
});
