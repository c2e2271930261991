package turnstile;

/**
 * A conditional increment found the counter changed since the caller read
 * it.  It carries the value the counter has now, so the caller can retry
 * from there without another query.
 */
public class OutOfSyncException extends Exception
{
	private static final long serialVersionUID = 1L;

	private final String name;
	private final long expected;
	private final long current;

	public OutOfSyncException(String name, long expected, long current)
	{
		super("counter \"" + name + "\" is out of sync: expected " + expected + ", current " + current);
		this.name = name;
		this.expected = expected;
		this.current = current;
	}

	/** The counter's name. */
	public String name()
	{
		return name;
	}

	/** The value the caller expected. */
	public long expected()
	{
		return expected;
	}

	/** The counter's value now (0 if it does not exist). */
	public long current()
	{
		return current;
	}
}
