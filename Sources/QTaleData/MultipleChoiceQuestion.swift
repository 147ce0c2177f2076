/// One multiple-choice question as its dataset states it, before any prompt formatting.
///
/// Every supported dataset maps onto these few fields, so the same value serves zero-shot scoring
/// (``BenchmarkTask/prompts(for:)``) and, later, building prompt → response pairs for router training.
/// Readers never format prompts; formats never read files.
public struct MultipleChoiceQuestion: Sendable, Equatable, Codable {
    /// The dataset's id for the question, or `file:line` where the dataset has none.
    public var id: String
    /// Background the question is about: Social IQa's situation, BoolQ's passage; nil elsewhere.
    public var context: String?
    /// The question proper: the ARC/OpenBookQA stem, Social IQa's or BoolQ's question, PIQA's goal, or the
    /// WinoGrande sentence with its `_` blank.
    public var query: String
    /// The alternatives in dataset order: answer texts (ARC, OpenBookQA, Social IQa, PIQA), the two
    /// options that fill the blank (WinoGrande), or `["no", "yes"]` (BoolQ).
    public var choices: [String]
    /// Index of the correct choice in ``choices``.
    public var answer: Int
    /// `file:line` the question was read from, for error messages.
    public var location: String

    public init(id: String, context: String? = nil, query: String, choices: [String], answer: Int, location: String) {
        self.id = id
        self.context = context
        self.query = query
        self.choices = choices
        self.answer = answer
        self.location = location
    }
}
