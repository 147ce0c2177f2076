/// Chat prompt formatting for instruct models.
public enum ChatTemplate {
    /// The system prompt SmolLM2's GGUF chat template inserts when the conversation has no system message.
    public static let smolLMDefaultSystemPrompt = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    /// ChatML for a single user turn, ending with the assistant header so the model answers next:
    /// "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n".
    /// With `system == nil` the system turn uses SmolLM2's default prompt, as its template does.
    public static func chatML(user: String, system: String? = nil) -> String {
        var messages: [Message] = []
        if let system { messages.append(Message(role: "system", content: system)) }
        messages.append(Message(role: "user", content: user))
        return chatML(messages: messages)
    }

    /// ChatML for a whole conversation, as SmolLM2's template renders it: a default system turn is
    /// inserted when the first message is not a system message.
    public static func chatML(messages: [Message], addGenerationPrompt: Bool = true,
                              defaultSystem: String? = smolLMDefaultSystemPrompt) -> String {
        var out = ""
        if let defaultSystem, messages.first?.role != "system" {
            out += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
        }
        for message in messages {
            out += "<|im_start|>\(message.role)\n\(message.content)<|im_end|>\n"
        }
        if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        return out
    }
}
