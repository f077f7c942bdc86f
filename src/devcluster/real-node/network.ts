// The real node's own network namespace, like a kind node's container: kube-proxy's iptables
// rules, the pods' bridge and the kubelet's ports live in it, so two clusters on one machine (and
// the machine itself) never see each other's rules. A veth pair joins it to the machine:
//
//   machine  sjh<N> 10.245.N.1/30  <->  eth0 10.245.N.2/30  node namespace sjnode<N>
//                                                   bridge 10.244.N.1/24  <->  pods 10.244.N.x
//
// The cluster's services (kube-apiserver, MinIO, Kafka) listen on 10.245.N.1: reachable from the
// machine and from pods, from nowhere else. N is the cluster's claimed pod network octet.
import { spawnSync } from "node:child_process";
import { runCommand } from "../processes.js";

export interface NodeNetwork {
  /** Name of the network namespace (`ip netns`), and its path for `nsenter --net=`. */
  netns: string;
  netnsPath: string;
  /** The machine's end of the link: where the cluster's services listen. */
  hostIp: string;
  /** The node's end: its InternalIP, where the kubelet listens. */
  nodeIp: string;
  podCidr: string;
  hostLink: string;
}

export function nodeNetwork(octet: number): NodeNetwork {
  if (!Number.isInteger(octet) || octet < 1 || octet > 254) throw new Error(`octet ${octet} is not 1..254`);
  const netns = `sjnode${octet}`;
  return {
    netns,
    netnsPath: `/run/netns/${netns}`,
    hostIp: `10.245.${octet}.1`,
    nodeIp: `10.245.${octet}.2`,
    podCidr: `10.244.${octet}.0/24`,
    hostLink: `sjh${octet}`,
  };
}

/** The command line that runs `command` inside the node's network namespace (and nothing else's). */
export function inNodeNetwork(network: NodeNetwork, command: string, args: string[]): [string, string[]] {
  return ["nsenter", [`--net=${network.netnsPath}`, "--", command, ...args]];
}

/** Creates the namespace and the link (replacing what a crashed cluster with this octet left). */
export async function createNodeNetwork(octet: number): Promise<NodeNetwork> {
  const network = nodeNetwork(octet);
  deleteNodeNetwork(network);
  const ip = (...args: string[]) => runCommand("ip", args);
  const node = (command: string, ...args: string[]) => runCommand(...inNodeNetwork(network, command, args));
  await ip("netns", "add", network.netns);
  await ip("link", "add", network.hostLink, "type", "veth", "peer", "name", "eth0", "netns", network.netns);
  await ip("addr", "add", `${network.hostIp}/30`, "dev", network.hostLink);
  await ip("link", "set", network.hostLink, "up");
  await node("ip", "link", "set", "lo", "up");
  await node("ip", "addr", "add", `${network.nodeIp}/30`, "dev", "eth0");
  await node("ip", "link", "set", "eth0", "up");
  await node("ip", "route", "add", "default", "via", network.hostIp);
  await ip("route", "add", network.podCidr, "via", network.nodeIp);
  // The node routes between its pods and the machine; bridged traffic passes iptables, so a
  // Service's reply from a pod on the same bridge is un-NATed (what kube-proxy expects).
  await node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
  await node("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1");
  return network;
}

/** Deleting the namespace deletes its interfaces, the veth pair and the route with them. */
export function deleteNodeNetwork(network: NodeNetwork): void {
  spawnSync("ip", ["netns", "delete", network.netns], { stdio: "ignore" });
  spawnSync("ip", ["link", "delete", network.hostLink], { stdio: "ignore" });
}
