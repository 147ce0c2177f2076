/// Looser bounds that an engine states for some cases because its numerics there are deliberately not
/// float32's. The conformance runner applies them, so the test suite and `qtale conformance` hold an
/// engine to the same bounds.
public enum StatedTolerance {
    /// The largest NMSE `engine` states for `testCase`, or nil when the catalog's bound applies.
    ///
    /// `cpu-int8` rounds the input of 4-bit decode matmuls to one int8 term per pack, as llama.cpp does:
    /// NMSE ≤ 5e-4 (ggml's bound for its int8-activation matmuls), and 5e-3 for inputs spanning six
    /// decades, of which one int8 term per pack keeps about two (measured up to 1e-3).
    public static func maxNMSE(for testCase: ConformanceCase, engine: String) -> Double? {
        guard engine == "cpu-int8", isFourBitDecode(testCase) else { return nil }
        return testCase.parameters.contains("wide-range") ? 5e-3 : 5e-4
    }

    /// 4-bit matmuls of one token: the cases the int8 decode modes change.
    public static func isFourBitDecode(_ testCase: ConformanceCase) -> Bool {
        testCase.op == "matmul" && testCase.parameters.hasPrefix("w4") && testCase.parameters.contains("T=1 ")
    }
}
