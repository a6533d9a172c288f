/**
 * createClient with a list of addresses (README "Many servers"): one grpc-js target naming them
 * all (`ipv4:` or `ipv6:`, which grpc-js resolves to every address), balanced round robin unless
 * told otherwise; host names are refused with the advice to use one DNS name instead.
 * test/scale/three-servers.test.ts runs such a client against three real servers.
 */
import { describe, expect, it } from "vitest";
import { AssignmentService, createClient } from "assignment-client";

describe("createClient with a list of addresses", () => {
  it("makes one ipv4: or ipv6: target of them", () => {
    const v4 = createClient(AssignmentService, ["127.0.0.1:5001", "127.0.0.1:5002", "10.0.0.3:5003"]);
    expect(v4.channel.getChannel().getTarget()).toBe("ipv4:127.0.0.1:5001,127.0.0.1:5002,10.0.0.3:5003");
    v4.close();
    const v6 = createClient(AssignmentService, ["[::1]:5001", "[::1]:5002"]);
    expect(v6.channel.getChannel().getTarget()).toBe("ipv6:[::1]:5001,[::1]:5002");
    v6.close();
    const one = createClient(AssignmentService, "127.0.0.1:5001");
    expect(one.channel.getChannel().getTarget()).toBe("dns:127.0.0.1:5001");
    one.close();
  });

  it("refuses an empty list, host names and a mix of IPv4 and IPv6, naming the way out", () => {
    expect(() => createClient(AssignmentService, [])).toThrow(/address: an empty list/);
    expect(() => createClient(AssignmentService, ["localhost:5001", "127.0.0.1:5002"])).toThrow(/dns:\/\/\//);
    expect(() => createClient(AssignmentService, ["127.0.0.1:5001", "[::1]:5002"])).toThrow(/all of one kind/);
    expect(() => createClient(AssignmentService, ["127.0.0.1"])).toThrow(/IPv4/);
  });
});
