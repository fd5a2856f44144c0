-- A room's chat history is read newest first, a page at a time (rooms.repository.chat_before): this
-- index answers "the last N chats before seq S" without walking the room's transport messages.
CREATE INDEX room_messages_chat ON room_messages (room_id, seq DESC) WHERE kind = 'chat';
