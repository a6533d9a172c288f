/**
 * The client package's typed params (assignment-client: Params, paramsByNamespace,
 * paramsColumnAnswers): a value of the asked type, or the caller's fallback when the key is
 * missing or holds another type.
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  Params,
  ParamsColumnSchema,
  paramsByNamespace,
  paramsColumnAnswers,
  Reason,
  ResolvedParamsChoiceSchema,
  ResolvedParamsSchema,
} from "assignment-client";

describe("Params", () => {
  it("answers values of the asked type", () => {
    const p = new Params({ button_color: "green", font_size: 16, beta: true, tags: ["a", "b"], layout: { columns: 3 }, none: null });
    expect(p.getString("button_color", "blue")).toBe("green");
    expect(p.getNumber("font_size", 14)).toBe(16);
    expect(p.getBool("beta", false)).toBe(true);
    expect(p.getList("tags")).toEqual(["a", "b"]);
    expect(p.getObject("layout").getNumber("columns", 1)).toBe(3);
    expect(p.has("none")).toBe(true);
    expect(p.has("absent")).toBe(false);
    expect(p.toJson()).toEqual({ button_color: "green", font_size: 16, beta: true, tags: ["a", "b"], layout: { columns: 3 }, none: null });
  });

  it("answers the fallback for a missing or mistyped param", () => {
    const p = new Params({ button_color: 7, font_size: "16", beta: 1, tags: "a", layout: [1], none: null });
    expect(p.getString("button_color", "blue")).toBe("blue");
    expect(p.getNumber("font_size", 14)).toBe(14);
    expect(p.getNumber("beta", 3)).toBe(1);
    expect(new Params({ on: true }).getNumber("on", 3)).toBe(3);
    expect(p.getBool("beta", false)).toBe(false);
    expect(p.getList("tags", ["x"])).toEqual(["x"]);
    expect(p.getObject("layout", { columns: 2 }).getNumber("columns", 1)).toBe(2);
    expect(p.getObject("none").toJson()).toEqual({});
    expect(p.getString("absent", "blue")).toBe("blue");
    expect(new Params(undefined).toJson()).toEqual({});
  });
});

describe("ResolveParams answers", () => {
  it("paramsByNamespace keys the answers by namespace with their params typed", () => {
    const answers = paramsByNamespace([
      create(ResolvedParamsSchema, {
        namespaceKey: "checkout",
        params: { button_color: "green" },
        experimentKey: "buttons",
        variantKey: "green",
        reason: Reason.NEW,
        enrolled: true,
        stored: true,
      }),
      create(ResolvedParamsSchema, { namespaceKey: "search", params: { ranker: "bm25" } }),
    ]);
    expect([...answers.keys()]).toEqual(["checkout", "search"]);
    const c = answers.get("checkout")!;
    expect([c.params.getString("button_color", "blue"), c.experimentKey, c.variantKey, c.reason, c.stored]).toEqual([
      "green",
      "buttons",
      "green",
      Reason.NEW,
      true,
    ]);
    expect(answers.get("search")!.params.getString("ranker", "")).toBe("bm25");
    expect(answers.get("search")!.reason).toBe(Reason.UNSPECIFIED);
  });

  it("paramsColumnAnswers unpacks a column per unit, in order", () => {
    const column = create(ParamsColumnSchema, {
      namespaceKey: "checkout",
      legend: [
        create(ResolvedParamsChoiceSchema, { params: { button_color: "blue" } }),
        create(ResolvedParamsChoiceSchema, { params: { button_color: "green" }, experimentKey: "buttons", variantKey: "green" }),
      ],
      legendIndexes: [1, 0, 1],
      reasons: [Reason.NEW, Reason.UNSPECIFIED, Reason.STICKY],
      enrolled: [true, false, true],
      stored: [true, false, true],
    });
    expect(paramsColumnAnswers(column).map((a) => [a.params.getString("button_color", "?"), a.variantKey, a.reason, a.stored])).toEqual([
      ["green", "green", Reason.NEW, true],
      ["blue", "", Reason.UNSPECIFIED, false],
      ["green", "green", Reason.STICKY, true],
    ]);
  });
});
