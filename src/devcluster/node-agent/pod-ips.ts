// Every pod gets its own loopback address (127.N.x.y): Linux routes all of 127.0.0.0/8 to the
// loopback interface, so pods can listen on the same port without clashing, as on a real node.
// Each cluster on the machine claims its own N (../pod-networks.ts), so two clusters never hand out
// the same address.

export class PodIPAllocator {
  private readonly byPod = new Map<string, number>();
  private readonly used = new Set<number>();
  private next = 1;

  constructor(private readonly octet = 1) {}

  allocate(podUid: string): string {
    let index = this.byPod.get(podUid);
    if (index === undefined) {
      // 65534 addresses; reuse starts from the lowest freed one only after a full cycle, so a
      // just-deleted pod's address is not handed out again at once.
      for (let tries = 0; tries < 65534 && this.used.has(this.next); tries++)
        this.next = (this.next % 65534) + 1;
      if (this.used.has(this.next)) throw new Error(`no free pod IP left in 127.${this.octet}.0.0/16`);
      index = this.next;
      this.next = (this.next % 65534) + 1;
      this.used.add(index);
      this.byPod.set(podUid, index);
    }
    return `127.${this.octet}.${Math.floor(index / 256)}.${index % 256}`;
  }

  release(podUid: string): void {
    const index = this.byPod.get(podUid);
    if (index === undefined) return;
    this.byPod.delete(podUid);
    this.used.delete(index);
  }
}
