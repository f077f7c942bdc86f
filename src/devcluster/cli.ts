// `npm run assets`, `npm run cluster:up`, `npm run cluster:down`.
import path from "node:path";
import { ensureAssets } from "./assets.js";
import { clusterDir, down, up } from "./cluster.js";
import { podNetworkOctet } from "./pod-networks.js";
import { nodeNetwork } from "./real-node/network.js";
import { KAFKA_SECRET_NAME } from "../connectors/kafka/connection.js";

function printUsage(state: { kubeconfig: string }): void {
  const bin = path.join(clusterDir(), "bin");
  console.log("");
  console.log("Use the cluster with:");
  console.log(`  export KUBECONFIG=${state.kubeconfig}`);
  console.log(`  export PATH=${bin}:$PATH   # kubectl and helm matching the cluster`);
  console.log("  kubectl get nodes,pods -A");
  const custom = process.env.DEVCLUSTER_DIR ? `DEVCLUSTER_DIR=${process.env.DEVCLUSTER_DIR} ` : "";
  console.log(`Stop it with: ${custom}npm run cluster:down`);
}

async function main(command: string | undefined): Promise<void> {
  switch (command) {
    case "assets":
      await ensureAssets();
      return;
    case "up": {
      const { state, alreadyRunning } = await up();
      if (alreadyRunning) console.log(`local cluster already running at ${state.apiserverUrl}`);
      else
        console.log(
          `local cluster ready at ${state.apiserverUrl} in ${(state.readyAfterMs / 1000).toFixed(1)}s`,
        );
      console.log(`MinIO at ${state.minioEndpoint} (credentials in Secret default/streamjob-storage)`);
      console.log(
        `Kafka at ${state.kafkaBootstrapServers} (bootstrapServers in Secret default/${KAFKA_SECRET_NAME})`,
      );
      if (state.node === "real") {
        const { podCidr } = nodeNetwork(podNetworkOctet(state.podNetwork!));
        console.log(`node: real (kubelet, containerd and runc; kube-proxy, CoreDNS); pods on ${podCidr}`);
      } else if (state.podNetwork) {
        console.log(`node: emulated (pods are host processes); pod addresses from ${state.podNetwork}`);
      }
      printUsage(state);
      return;
    }
    case "down":
      await down();
      return;
    default:
      throw new Error(`usage: cli.ts assets|up|down (got ${command ?? "nothing"})`);
  }
}

main(process.argv[2]).catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
